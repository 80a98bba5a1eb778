//! Who may connect: `transport.kcp.key` (a key shared by everyone, paqet's way),
//! `identity.private_key` with `server.public_key` (a client with its own key) and
//! `clients[]` (the server's list of client keys). docs/SECURITY.md says when to use which.

use std::collections::HashSet;

use super::raw::{RawClient, RawIdentity};
use super::validate::Ctx;
use super::{ConfigError, Role};
use crate::crypto::{PublicKey, StaticSecret};

/// Longest client name.
const NAME_MAX: usize = 64;

/// One `clients[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientKey {
    /// Shown in logs, `rawtun status` and metrics.
    pub name: String,
    pub public_key: PublicKey,
}

/// The credentials of a config, validated for its role. `Debug` hides secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// `transport.kcp.key`: the shared key (64 hex digits, or a password).
    pub shared: Option<String>,
    /// `identity.private_key`: this machine's static key.
    pub identity: Option<StaticSecret>,
    /// Client: `server.public_key`.
    pub server_public: Option<PublicKey>,
    /// Server: `clients`.
    pub clients: Vec<ClientKey>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("shared", &self.shared.as_ref().map(|_| "<redacted>"))
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .field("server_public", &self.server_public)
            .field("clients", &self.clients)
            .finish()
    }
}

const HOWTO: &str = "generate keys with `rawtun keygen` (a key per client) or `rawtun secret` \
                     (a shared key)";

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

pub(super) fn auth(
    ctx: &Ctx,
    role: Role,
    shared: Option<String>,
    identity: Option<RawIdentity>,
    server_public: Option<String>,
    clients: Option<Vec<RawClient>>,
) -> Result<Auth, ConfigError> {
    let identity = match identity.map(|i| i.private_key) {
        None => None,
        Some(None) => return Err(ctx.err("identity.private_key", "is required")),
        Some(Some(k)) => Some(
            StaticSecret::from_hex(&k)
                .map_err(|e| ctx.err("identity.private_key", e.to_string()))?,
        ),
    };
    let server_public = server_public
        .map(|k| PublicKey::from_hex(&k).map_err(|e| ctx.err("server.public_key", e.to_string())))
        .transpose()?;
    let clients = match clients {
        Some(list) => client_list(ctx, list)?,
        None => Vec::new(),
    };
    match role {
        Role::Client => {
            if !clients.is_empty() {
                return Err(ctx.err("clients", "is server-only but role is client"));
            }
            match (&shared, &identity, &server_public) {
                (Some(_), Some(_), _) => {
                    return Err(ctx.err(
                        "identity.private_key",
                        "set either transport.kcp.key (a shared key) or identity.private_key \
                         with server.public_key (a key of your own), not both",
                    ))
                }
                (None, Some(_), None) => {
                    return Err(ctx.err(
                        "server.public_key",
                        "is required with identity.private_key (the server's `rawtun keygen` \
                         public key)",
                    ))
                }
                (None, None, Some(_)) => {
                    return Err(ctx.err(
                        "identity.private_key",
                        "is required with server.public_key (this client's own key)",
                    ))
                }
                (Some(_), None, Some(_)) => {
                    return Err(ctx.err(
                        "server.public_key",
                        "is for a key per client; with transport.kcp.key leave it out",
                    ))
                }
                (None, None, None) => {
                    return Err(ctx.err("transport.kcp.key", format!("is required: {HOWTO}")))
                }
                _ => {}
            }
        }
        Role::Server => {
            match (&identity, clients.is_empty()) {
                (Some(_), true) => {
                    return Err(ctx.err(
                        "clients",
                        "list at least one client (name and public_key) for identity.private_key",
                    ))
                }
                (None, false) => {
                    return Err(ctx.err(
                        "identity.private_key",
                        "is required with clients (the server's own key: rawtun keygen)",
                    ))
                }
                _ => {}
            }
            if shared.is_none() && identity.is_none() {
                return Err(ctx.err("transport.kcp.key", format!("is required: {HOWTO}")));
            }
        }
    }
    Ok(Auth {
        shared,
        identity,
        server_public,
        clients,
    })
}

fn client_list(ctx: &Ctx, raw: Vec<RawClient>) -> Result<Vec<ClientKey>, ConfigError> {
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, c) in raw.into_iter().enumerate() {
        let f = |n: &str| format!("clients[{i}].{n}");
        let name = c.name.ok_or_else(|| ctx.err(&f("name"), "is required"))?;
        if !name_ok(&name) {
            let msg = format!("{name:?}: use 1–{NAME_MAX} letters, digits and . _ - @");
            return Err(ctx.err(&f("name"), msg));
        }
        if !names.insert(name.clone()) {
            return Err(ctx.err(&f("name"), format!("{name:?} is listed twice")));
        }
        let key = c
            .public_key
            .ok_or_else(|| ctx.err(&f("public_key"), "is required"))?;
        let public_key =
            PublicKey::from_hex(&key).map_err(|e| ctx.err(&f("public_key"), e.to_string()))?;
        if !keys.insert(public_key) {
            return Err(ctx.err(&f("public_key"), "is the key of another client"));
        }
        out.push(ClientKey { name, public_key });
    }
    Ok(out)
}
