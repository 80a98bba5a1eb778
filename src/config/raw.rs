//! Stage one of loading: the YAML schema as serde structs, exactly as written by the user.
//! Every struct denies unknown fields and every field is optional; numbers are read as
//! `i64` so range errors can quote the value. Also serialized back for the effective config.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<RawLog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<RawAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<RawServer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socks5: Option<Vec<RawSocks5>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward: Option<Vec<RawForward>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<RawNetwork>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<RawTransport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performance: Option<RawPerformance>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall: Option<RawFirewall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<RawMetrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<RawTargets>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<RawLimits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<RawIdentity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<RawClient>>,
}

/// `server:` on a client: `{ addr: "host:port", public_key: "hex" }`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// `identity:` — this machine's static key.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

/// One `clients[]` entry on a server.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// `listen:` and `server:` sections: `{ addr: "host:port" }`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAddr {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSocks5 {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForward {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<RawIp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<RawIp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<RawTcp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap: Option<RawPcap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub afpacket: Option<RawAfPacket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<Switchable>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAfPacket {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qdisc_bypass: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIp {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_mac: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTcp {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_flag: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_flag: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPcap {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sockbuf: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kcp: Option<RawKcp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<RawTimeouts>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKcp {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodelay: Option<Switch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resend: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nocongestion: Option<Switch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wdelay: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknodelay: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratecap: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcvwnd: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sndwnd: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smuxbuf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streambuf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dshard: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pshard: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dial: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPerformance {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_workers: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFirewall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTargets {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams_per_session: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dials_per_session: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookups_per_session: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_associations_per_session: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions_per_address: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookups: Option<i64>,
}

/// paqet's 0/1 integer switches, also accepted as YAML booleans. Holds the integer as
/// written so a `2` can be reported; serialized as 0/1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Switch(pub i64);

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SwitchVisitor;
        impl Visitor<'_> for SwitchVisitor {
            type Value = Switch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("0, 1, true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Switch, E> {
                Ok(Switch(i64::from(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Switch, E> {
                Ok(Switch(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Switch, E> {
                Ok(Switch(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        d.deserialize_any(SwitchVisitor)
    }
}

impl Serialize for Switch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

/// A boolean that may also be the string `auto` (`network.nat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Switchable {
    Bool(bool),
    Text(String),
}

impl<'de> Deserialize<'de> for Switchable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Switchable;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or auto")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Switchable, E> {
                Ok(Switchable::Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Switchable, E> {
                Ok(Switchable::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Switchable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Switchable::Bool(b) => s.serialize_bool(*b),
            Switchable::Text(t) => s.serialize_str(t),
        }
    }
}
