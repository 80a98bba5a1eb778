//! Name resolution for the server's dials: an async stub resolver (hickory-resolver) with a
//! bound on the lookups in flight, real cancellation and a cache that honours TTLs.
//!
//! `getaddrinfo` on tokio's blocking pool cannot be cancelled: a lookup whose nameserver
//! never answers keeps a pool thread after the dial has given up, so a few hundred of them
//! starve everyone's lookups. Here a lookup is a future: dropping it (the dial deadline
//! passed, the stream was reset) ends it, and the resolver's own per-query timeout and
//! attempts are sized so its background work ends by the dial deadline too.
//!
//! - configuration: `/etc/resolv.conf` (nameservers, search, ndots, timeout, attempts) and
//!   `/etc/hosts`, read once when the daemon starts. Without a usable resolv.conf only
//!   `/etc/hosts` answers (nothing is sent to a built-in public resolver). A records are
//!   asked first and AAAA only for a name without any (IPv4 before IPv6);
//! - cache: positive and negative answers are kept for their TTL (negative ones at most
//!   [`NEGATIVE_TTL_MAX`]);
//! - concurrency: at most `limits.lookups` lookups in flight server-wide (a lookup waits
//!   for a slot until its deadline), and at most `limits.lookups_per_session` per session
//!   ([`super::SessionBudget`]), so one client cannot hold every slot.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::TokioResolver;
use tokio::sync::Semaphore;

/// Longest a "no such name" answer is cached.
pub const NEGATIVE_TTL_MAX: Duration = Duration::from_secs(60);
/// Most attempts per query, whatever resolv.conf says.
const ATTEMPTS_MAX: usize = 2;

/// Why a name did not resolve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name has no A or AAAA record (or does not exist).
    #[error("no address for the name")]
    NotFound,
    /// The nameservers did not answer in time.
    #[error("lookup timed out")]
    Timeout,
    /// The session has `limits.lookups_per_session` lookups in flight already.
    #[error("too many lookups in flight for this session")]
    Busy,
    /// Any other failure (refused, malformed answer, no nameserver reachable).
    #[error("lookup failed: {0}")]
    Failed(String),
}

/// A shared resolver: cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<TokioResolver>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("slots_free", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver configured from `/etc/resolv.conf` and `/etc/hosts`, with at most
    /// `max_in_flight` lookups at once; each lookup's resolver-side retries end within
    /// `budget` (the dial timeout).
    pub fn system(max_in_flight: usize, budget: Duration) -> Resolver {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match TokioResolver::builder(provider.clone()) {
            Ok(b) => b,
            Err(error) => {
                tracing::warn!(
                    %error,
                    "cannot use /etc/resolv.conf; names resolve from /etc/hosts only"
                );
                let empty = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
                TokioResolver::builder_with_config(empty, provider)
            }
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.attempts = opts.attempts.clamp(1, ATTEMPTS_MAX);
        let per_try = budget / opts.attempts as u32;
        opts.timeout = opts.timeout.min(per_try).max(Duration::from_millis(200));
        opts.negative_max_ttl = Some(NEGATIVE_TTL_MAX);
        // A first, AAAA only when there is no A: one query for most names, and a name in
        // /etc/hosts is not held up by a parallel AAAA query to a slow nameserver.
        opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        let inner = match builder.build() {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(%error, "resolver: falling back to /etc/hosts only");
                let empty = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
                TokioResolver::builder_with_config(empty, TokioRuntimeProvider::default())
                    .build()
                    .expect("invariant: a resolver without nameservers always builds")
            }
        };
        Resolver {
            inner: Arc::new(inner),
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Lookups that may start now before one has to wait for a slot.
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Resolves `host` to socket addresses with `port` (its IPv4 addresses, or its IPv6
    /// ones when it has no IPv4 address). Waits for a server-wide slot first. Cancelled by
    /// dropping the future.
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| ResolveError::Failed("resolver closed".into()))?;
        match self.inner.lookup_ip(host).await {
            Ok(found) => {
                let addrs: Vec<SocketAddr> =
                    found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
                if addrs.is_empty() {
                    Err(ResolveError::NotFound)
                } else {
                    Ok(addrs)
                }
            }
            Err(e) => Err(classify(&e)),
        }
    }
}

fn classify(e: &NetError) -> ResolveError {
    match e {
        NetError::Timeout => ResolveError::Timeout,
        NetError::Dns(_) => ResolveError::NotFound,
        other => {
            if other.is_no_records_found() || other.is_nx_domain() {
                ResolveError::NotFound
            } else {
                ResolveError::Failed(other.to_string())
            }
        }
    }
}
