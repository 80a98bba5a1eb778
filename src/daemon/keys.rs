//! From a config's keys to the crypto layer's identities: the server's list of
//! [`ServerIdentity`] (one per server key) and a client's [`ClientIdentity`].
//!
//! A password-style shared key is stretched with Argon2 salted with the address clients
//! dial, so the server derives one identity per address it may be reached at: its
//! configured and detected addresses on the listen port. A server behind NAT whose clients
//! dial another address needs a 64-hex-digit key or per-client keys (`rawtun check` warns).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;

use crate::config::{Config, Role};
use crate::crypto::{is_password, ClientIdentity, ServerIdentity, SharedKey};

/// The addresses a server may be dialed at: `listen.addr`'s IP if set, the configured
/// `network.ipv4/ipv6` addresses, the detected local address and the interface's
/// addresses, each on the listen port.
pub fn server_addresses(
    cfg: &Config,
    local_ip: IpAddr,
    interface: Option<&str>,
) -> Vec<SocketAddr> {
    let port = cfg.listen.map_or(0, |l| l.port());
    let mut ips: Vec<IpAddr> = Vec::new();
    let mut add = |ip: IpAddr| {
        if !ip.is_unspecified() && !ips.contains(&ip) {
            ips.push(ip);
        }
    };
    if let Some(l) = cfg.listen {
        add(l.ip());
    }
    for a in [&cfg.network.ipv4, &cfg.network.ipv6].into_iter().flatten() {
        add(a.addr.ip());
    }
    add(local_ip);
    if let Some(name) = interface {
        for ip in crate::sys::interface_addrs(name).unwrap_or_default() {
            add(ip);
        }
    }
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// The server's identities: the per-client key (if `identity` and `clients` are set), then
/// the shared key (one identity per address in `addresses` for a password).
pub fn server_identities(
    cfg: &Config,
    addresses: &[SocketAddr],
) -> anyhow::Result<Arc<[ServerIdentity]>> {
    let mut out = Vec::new();
    if let Some(secret) = &cfg.auth.identity {
        let clients: Vec<_> = cfg
            .auth
            .clients
            .iter()
            .map(|c| (c.name.clone(), c.public_key))
            .collect();
        let (identity, bad) = ServerIdentity::new(secret.clone(), &clients);
        for name in bad {
            tracing::warn!(client = %name, "client public key is not a usable X25519 key: ignored");
        }
        out.push(identity);
    }
    if let Some(key) = &cfg.auth.shared {
        if is_password(key) {
            if addresses.is_empty() {
                anyhow::bail!("a password key needs the server's address (set network.ipv4.addr)");
            }
            for a in addresses {
                let k = SharedKey::from_key(key, *a).context("deriving the key")?;
                out.push(k.server_identity());
            }
            tracing::info!(
                addresses = ?addresses,
                "transport.kcp.key is a password: clients must dial one of these addresses"
            );
        } else {
            // The address does not matter for a 64-hex-digit key.
            let any = SocketAddr::from(([0, 0, 0, 0], 0));
            out.push(SharedKey::from_key(key, any)?.server_identity());
        }
    }
    Ok(out.into())
}

/// A client's identity for `cfg` (role client).
pub fn client_identity(cfg: &Config) -> anyhow::Result<Arc<ClientIdentity>> {
    anyhow::ensure!(cfg.role == Role::Client, "not a client config");
    let server = cfg.server.context("server.addr is required on a client")?;
    if let (Some(secret), Some(public)) = (&cfg.auth.identity, cfg.auth.server_public) {
        return Ok(Arc::new(
            ClientIdentity::new(secret.clone(), public)
                .context("identity.private_key and server.public_key give no shared secret")?,
        ));
    }
    let key = cfg
        .auth
        .shared
        .as_ref()
        .context("transport.kcp.key is required")?;
    Ok(Arc::new(
        SharedKey::from_key(key, server)
            .context("deriving the key")?
            .client_identity(),
    ))
}
