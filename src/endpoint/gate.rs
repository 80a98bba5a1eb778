//! The server's gate: what decides, before any state or public-key work, whether a packet
//! from a source without a session gets anything at all.
//!
//! In order of cost, each step only for packets that passed the previous one:
//!
//! 1. **Proof** (one or two PRF calls per server key): the SYN proof in ISN/TSval, msg1's
//!    masked client id and its mac1 under that client's own key, or a probe's tag under
//!    that client's key ([`crate::crypto::proof`], [`crate::crypto::check_msg1`]). A
//!    stranger's packet stops here, whatever its length or content; so does a msg1 or probe
//!    of a client that was removed.
//! 2. **Time rule** (`|t − now| ≤ skew`, `t ≥ start`) and **seen-set**
//!    ([`crate::crypto::freshness`]): a recorded opening or probe replayed later, from the
//!    same or another address, stops here. The seen-sets are shared by all packet workers
//!    (a replay from another address may land on another worker) behind one lock that only
//!    packets which passed step 1 take. A msg1 is recorded *before* the rate limit, so one
//!    refused for the rate is refused as a replay later too, and each client may record a
//!    bounded number per generation, so one client filling the set locks out only itself.
//! 3. **Rate limits** on the work that follows (Noise DH for msg1, resets), per client and
//!    in total: a key holder flooding valid openings cannot starve the sessions already
//!    running.
//!
//! The SYN proof names no client (it has 64 bits), so any holder of the server's public key
//! — every client, also a removed one — can make valid SYNs. Their seen-set therefore fails
//! open when full (accepts without recording, counted): full, it could only lock everyone
//! out. Every refusal is counted by reason in [`DropStats`]; nothing is ever sent back.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;

use super::connection::ClientInfo;
use super::DropStats;
use crate::crypto::freshness::{check_time, Seen, SeenSet, Staleness};
use crate::crypto::proof::{self, Probe};
use crate::crypto::{
    self, Accepted, Binding, Cipher, ClientId, HandshakeError, Msg1Check, ServerIdentity,
    CLOCK_SKEW_MS,
};
use crate::wire::{ParsedFrame, TcpFlags};

/// Digests each seen-set holds per generation (per server process).
const SEEN_CAPACITY: usize = 1 << 18;
/// msg1 digests one client may record per seen-set generation (2 × skew): 32/s on average.
const CLIENT_QUOTA: u32 = 16_384;
/// Clients with a rate bucket at most.
const RATE_KEYS: usize = 8192;

/// Limits of the gate; [`GateConfig::default`] is what the daemon uses.
#[derive(Clone, Copy, Debug)]
pub struct GateConfig {
    /// Clock difference tolerated between client and server.
    pub skew_ms: u64,
    /// Handshakes (DH work) per second and burst, per client key.
    pub handshakes_per_client: (f64, f64),
    /// Handshakes per second and burst, in total.
    pub handshakes_total: (f64, f64),
    /// Resets and probe answers per second and burst, per client key.
    pub resets_per_client: (f64, f64),
    /// Resets and probe answers per second and burst, in total.
    pub resets_total: (f64, f64),
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            skew_ms: CLOCK_SKEW_MS,
            // Bursts fit a client opening `transport.conn: 256` sessions at once.
            handshakes_per_client: (32.0, 300.0),
            handshakes_total: (1000.0, 2000.0),
            resets_per_client: (10.0, 20.0),
            resets_total: (500.0, 1000.0),
        }
    }
}

/// A token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    fn take(&mut self, (rate, burst): (f64, f64), now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets per key (a client), bounded.
struct RateTable<K> {
    map: HashMap<K, Bucket>,
}

impl<K: Hash + Eq> RateTable<K> {
    fn new() -> RateTable<K> {
        RateTable {
            map: HashMap::new(),
        }
    }

    fn take(&mut self, key: K, limit: (f64, f64), now: Instant) -> Option<bool> {
        if !self.map.contains_key(&key) && self.map.len() >= RATE_KEYS {
            // Forget sources whose bucket has refilled (they lose nothing by it).
            let refill = Duration::from_secs_f64(limit.1 / limit.0.max(1e-9));
            self.map
                .retain(|_, b| now.saturating_duration_since(b.last) < refill);
            if self.map.len() >= RATE_KEYS {
                return None;
            }
        }
        let b = self
            .map
            .entry(key)
            .or_insert_with(|| Bucket::full(limit.1, now));
        Some(b.take(limit, now))
    }
}

/// What all workers' gates share.
struct Shared {
    syn_seen: SeenSet,
    msg1_seen: SeenSet,
    probe_seen: SeenSet,
    /// msg1 digests recorded per client in the seen-set's current generation.
    quota: HashMap<ClientId, u32>,
    quota_generation: u64,
    handshake_clients: RateTable<ClientId>,
    reset_clients: RateTable<ClientId>,
    handshakes: Bucket,
    resets: Bucket,
    /// When the SYN seen-set last failed open (for a warning a minute at most).
    syn_full_warned: Option<Instant>,
}

/// State shared by the gates of one server (create once, clone the `Arc` into each
/// worker's listener).
#[derive(Clone)]
pub struct GateShared {
    inner: Arc<Mutex<Shared>>,
    /// Unix ms when this server started: openings made before are never fresh.
    start_ms: u64,
}

impl GateShared {
    pub fn new(cfg: &GateConfig, start_ms: u64, now: Instant) -> GateShared {
        let seen = || SeenSet::new(cfg.skew_ms, SEEN_CAPACITY, start_ms);
        GateShared {
            inner: Arc::new(Mutex::new(Shared {
                syn_seen: seen(),
                msg1_seen: seen(),
                probe_seen: seen(),
                quota: HashMap::new(),
                quota_generation: 0,
                handshake_clients: RateTable::new(),
                reset_clients: RateTable::new(),
                handshakes: Bucket::full(cfg.handshakes_total.1, now),
                resets: Bucket::full(cfg.resets_total.1, now),
                syn_full_warned: None,
            })),
            start_ms,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A msg1 the gate accepted, with the msg2 answering it.
pub struct Opening {
    pub accepted: Accepted,
    pub client: ClientInfo,
    pub conv: u32,
    pub msg2: Vec<u8>,
}

/// One worker's gate. See the module docs.
pub struct Gate {
    pub(super) identities: Arc<[ServerIdentity]>,
    cfg: GateConfig,
    shared: GateShared,
    pub(super) drops: DropStats,
    pub(super) rng: StdRng,
}

impl Gate {
    pub fn new(
        identities: Arc<[ServerIdentity]>,
        cfg: GateConfig,
        shared: GateShared,
        rng: StdRng,
    ) -> Gate {
        Gate {
            identities,
            cfg,
            shared,
            drops: DropStats::default(),
            rng,
        }
    }

    /// Packets this gate refused, by reason.
    pub fn drops(&self) -> DropStats {
        self.drops
    }

    /// The bindings a proof from `src` may use: its address, or none (from behind NAT).
    fn bindings(src: SocketAddr) -> [Binding; 2] {
        [Binding::source(src), Binding::NONE]
    }

    /// Checks a proof's time (the caller counts a stale one).
    fn fresh(&self, t_ms: u64, now_ms: u64, what: &str, src: SocketAddr) -> Result<(), Staleness> {
        check_time(t_ms, now_ms, self.shared.start_ms, self.cfg.skew_ms).inspect_err(|s| {
            tracing::debug!(%src, skew_ms = t_ms as i64 - now_ms as i64, ?s, "{what} not fresh")
        })
    }

    /// True if a SYN proves a key and is fresh (then it is recorded as seen).
    pub fn check_syn(&mut self, frame: &ParsedFrame<'_>, now: Instant, now_ms: u64) -> bool {
        let r = &frame.repr;
        if !r.flags.contains(TcpFlags::SYN) || r.flags.contains(TcpFlags::ACK) {
            return false;
        }
        let Some((tsval, _)) = r.options.timestamp else {
            self.drops.syn_invalid += 1;
            return false;
        };
        let mut found = None;
        'search: for id in self.identities.iter() {
            for b in Self::bindings(r.src) {
                let t = proof::syn_time(id, &b, r.seq, tsval, now_ms);
                if proof::check_syn(id, &b, r.seq, t) {
                    found = Some((id.public, b, t));
                    break 'search;
                }
            }
        }
        let Some((server, b, t)) = found else {
            self.drops.syn_invalid += 1;
            return false;
        };
        if self.fresh(t, now_ms, "SYN proof", r.src).is_err() {
            self.drops.syn_stale += 1;
            return false;
        }
        let key = [
            &server.0[..],
            b.as_bytes(),
            &r.seq.to_be_bytes(),
            &tsval.to_be_bytes(),
        ];
        let mut shared = self.shared.lock();
        match shared.syn_seen.insert(&key, now_ms) {
            Seen::Fresh => true,
            Seen::Replay => {
                self.drops.syn_replay += 1;
                false
            }
            Seen::Full => {
                // Fail open (module docs): count it, and say so now and then.
                self.drops.state_full += 1;
                let warn = shared
                    .syn_full_warned
                    .is_none_or(|t| now.saturating_duration_since(t) > Duration::from_secs(60));
                if warn {
                    shared.syn_full_warned = Some(now);
                    tracing::warn!(
                        "the SYN seen-set is full: a holder of the server's public key floods \
                         valid SYNs; SYNs are accepted unrecorded while it lasts (rotate the \
                         server key if a removed client does this)"
                    );
                }
                true
            }
        }
    }

    /// Checks a msg1 (proof, time, seen-set, rate limit) and does the handshake. `None`
    /// when it is not a valid msg1 (the caller may try it as a probe); `Some(Err(()))` when
    /// it was one but is refused (counted).
    pub fn accept_msg1(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        msg1: &[u8],
        cipher: Cipher,
        now: Instant,
        now_ms: u64,
    ) -> Option<Result<Opening, ()>> {
        let check = crypto::check_msg1(&self.identities, &Self::bindings(src), msg1)?;
        Some(self.accept_checked(src, dst, msg1, check, cipher, now, now_ms))
    }

    /// Records a proven msg1 in the seen-set within its client's quota, then applies the
    /// rate limits. `Err` (counted) when it must be refused.
    fn admit_msg1(
        &mut self,
        check: &Msg1Check,
        server: &[u8; 32],
        e: &[u8; 32],
        now: Instant,
        now_ms: u64,
    ) -> Result<(), ()> {
        let mut shared = self.shared.lock();
        let key: [&[u8]; 2] = [server, e];
        if shared.msg1_seen.contains(&key, now_ms) {
            self.drops.msg1_replay += 1;
            return Err(());
        }
        let generation = shared.msg1_seen.generation(now_ms);
        if generation != shared.quota_generation {
            shared.quota.clear();
            shared.quota_generation = generation;
        }
        let used = shared.quota.entry(check.client).or_default();
        if *used >= CLIENT_QUOTA {
            self.drops.state_full += 1;
            return Err(());
        }
        *used += 1;
        if shared.msg1_seen.insert(&key, now_ms) == Seen::Full {
            self.drops.state_full += 1;
            return Err(());
        }
        let limit = self.cfg.handshakes_per_client;
        let allowed = match shared.handshake_clients.take(check.client, limit, now) {
            None => {
                self.drops.state_full += 1;
                return Err(());
            }
            Some(ok) => ok && shared.handshakes.take(self.cfg.handshakes_total, now),
        };
        if !allowed {
            self.drops.handshake_rate += 1;
            return Err(());
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn accept_checked(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        msg1: &[u8],
        check: Msg1Check,
        cipher: Cipher,
        now: Instant,
        now_ms: u64,
    ) -> Result<Opening, ()> {
        if self.fresh(check.t_ms, now_ms, "msg1", src).is_err() {
            self.drops.msg1_stale += 1;
            return Err(());
        }
        let e = crypto::msg1_ephemeral(msg1).ok_or(())?;
        let server = self.identities.get(check.identity).ok_or(())?.public;
        self.admit_msg1(&check, &server.0, &e, now, now_ms)?;
        let identity = self.identities.get(check.identity).ok_or(())?;
        let flow = Binding::flow(src, dst);
        let mut payload = Vec::new();
        flow.encode_flow(&mut payload);
        let mut msg2 = Vec::new();
        let accepted = match crypto::respond(
            identity,
            &check,
            cipher,
            msg1,
            &payload,
            &mut self.rng,
            &mut msg2,
        ) {
            Ok(a) => a,
            Err(e) => {
                self.drops.handshake_failed += 1;
                match e {
                    HandshakeError::UnknownClient => {
                        tracing::info!(%src, "handshake from a client key that is not configured (removed?): refused")
                    }
                    e => tracing::info!(%src, error = %e, "handshake refused"),
                }
                return Err(());
            }
        };
        let Some(conv) = accepted
            .payload
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            self.drops.handshake_failed += 1;
            return Err(());
        };
        let client = ClientInfo {
            name: accepted.client.name.clone(),
            id: check.client,
            server: identity.public,
        };
        Ok(Opening {
            accepted,
            client,
            conv,
            msg2,
        })
    }

    /// If `payload` is a fresh probe from a configured client for this flow, the probe and
    /// the index of the server key it is for (recorded as seen).
    pub fn check_probe(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        now_ms: u64,
    ) -> Option<(usize, Probe)> {
        let flow = Binding::flow(src, dst);
        let (i, probe) = self
            .identities
            .iter()
            .enumerate()
            .find_map(|(i, id)| proof::check_probe(id, &flow, payload).map(|p| (i, p)))?;
        if self.fresh(probe.t_ms, now_ms, "probe", src).is_err() {
            self.drops.probe_stale += 1;
            return None;
        }
        let server = self.identities.get(i)?.public;
        match self
            .shared
            .lock()
            .probe_seen
            .insert(&[&server.0, &probe.nonce], now_ms)
        {
            Seen::Fresh => Some((i, probe)),
            Seen::Replay => {
                self.drops.probe_stale += 1;
                None
            }
            Seen::Full => {
                self.drops.state_full += 1;
                None
            }
        }
    }

    /// True if answering `client`'s probe (a reset or an alive) is within the rate limits
    /// (counted otherwise).
    pub fn reset_allowed(&mut self, client: ClientId, now: Instant) -> bool {
        let mut shared = self.shared.lock();
        let ok = shared
            .reset_clients
            .take(client, self.cfg.resets_per_client, now)
            .unwrap_or(false)
            && shared.resets.take(self.cfg.resets_total, now);
        if !ok {
            self.drops.reset_rate += 1;
        }
        ok
    }
}
