//! The effective config: a validated [`Config`] written back as YAML with every default
//! filled in (what `rawtun check` prints). Secret keys are replaced by `"<redacted>"`.

use super::net::{mac_string, tcp_flags_string};
use super::raw::{
    RawAddr, RawAfPacket, RawClient, RawConfig, RawFirewall, RawForward, RawIdentity, RawIp,
    RawKcp, RawLimits, RawLog, RawMetrics, RawNetwork, RawPcap, RawPerformance, RawServer,
    RawSocks5, RawTargets, RawTcp, RawTimeouts, RawTransport, Switch, Switchable,
};
use super::{AddrConfig, Backend, Config, Role, TransportProtocol};

/// Shown instead of a secret key.
pub(super) const REDACTED: &str = "<redacted>";

fn int<T: TryInto<i64>>(v: T) -> Option<i64> {
    Some(v.try_into().unwrap_or(i64::MAX))
}

fn ip(a: &AddrConfig) -> RawIp {
    RawIp {
        addr: Some(a.addr.to_string()),
        router_mac: a.router_mac.as_ref().map(mac_string),
    }
}

fn flags(v: &[u8]) -> Option<Vec<String>> {
    Some(v.iter().map(|b| tcp_flags_string(*b)).collect())
}

pub(super) fn to_yaml(c: &Config) -> String {
    let client = c.role == Role::Client;
    let k = &c.transport.kcp;
    let t = &c.transport.timeouts;
    let raw = RawConfig {
        role: Some(c.role.as_str().to_owned()),
        log: Some(RawLog {
            level: Some(c.log_level.as_str().to_owned()),
        }),
        listen: c.listen.map(|a| RawAddr {
            addr: Some(a.to_string()),
        }),
        server: c.server.map(|a| RawServer {
            addr: Some(a.to_string()),
            public_key: c.auth.server_public.map(|k| k.to_hex()),
        }),
        socks5: client.then(|| {
            c.socks5
                .iter()
                .map(|s| RawSocks5 {
                    listen: Some(s.listen.to_string()),
                    username: s.auth.as_ref().map(|a| a.username.clone()),
                    password: s.auth.as_ref().map(|a| a.password.clone()),
                })
                .collect()
        }),
        forward: client.then(|| {
            c.forward
                .iter()
                .map(|f| RawForward {
                    listen: Some(f.listen.to_string()),
                    target: Some(f.target.to_string()),
                    protocol: Some(f.protocol.as_str().to_owned()),
                })
                .collect()
        }),
        network: Some(RawNetwork {
            interface: c.network.interface.clone(),
            ipv4: c.network.ipv4.as_ref().map(ip),
            ipv6: c.network.ipv6.as_ref().map(ip),
            tcp: Some(RawTcp {
                local_flag: flags(&c.network.tcp.local_flag),
                remote_flag: flags(&c.network.tcp.remote_flag),
                handshake: Some(c.network.tcp.handshake),
            }),
            pcap: Some(RawPcap {
                sockbuf: int(c.network.pcap_sockbuf),
            }),
            backend: Some(c.network.backend.as_str().to_owned()),
            afpacket: (c.network.backend == Backend::AfPacket).then_some(RawAfPacket {
                qdisc_bypass: Some(c.network.qdisc_bypass),
            }),
            nat: client.then(|| Switchable::Text(c.network.nat.as_str().to_owned())),
        }),
        transport: Some(RawTransport {
            protocol: Some(
                match c.transport.protocol {
                    TransportProtocol::Kcp => "kcp",
                }
                .to_owned(),
            ),
            conn: int(c.transport.conn),
            kcp: Some(RawKcp {
                mode: Some(k.mode.as_str().to_owned()),
                nodelay: Some(Switch(i64::from(k.nodelay))),
                interval: int(k.interval_ms),
                resend: int(k.resend),
                nocongestion: Some(Switch(i64::from(k.nocongestion))),
                wdelay: Some(k.wdelay),
                acknodelay: Some(k.acknodelay),
                ratecap: Some(k.ratecap),
                mtu: int(k.mtu),
                rcvwnd: int(k.rcvwnd),
                sndwnd: int(k.sndwnd),
                block: Some(k.block_name.clone()),
                key: k.key.as_ref().map(|_| REDACTED.to_owned()),
                smuxbuf: int(k.smuxbuf),
                streambuf: int(k.streambuf),
                dshard: Some(0),
                pshard: Some(0),
            }),
            timeouts: Some(RawTimeouts {
                keepalive: int(t.keepalive.as_secs()),
                idle: int(t.idle.as_secs()),
                dial: int(t.dial.as_secs()),
                handshake: int(t.handshake.as_secs()),
            }),
        }),
        performance: Some(RawPerformance {
            packet_workers: int(c.performance.packet_workers),
        }),
        firewall: Some(RawFirewall {
            auto: Some(c.firewall.auto),
        }),
        metrics: Some(RawMetrics {
            listen: c.metrics.listen.map(|a| a.to_string()),
        }),
        targets: (!client).then(|| RawTargets {
            allow: Some(c.targets.allow().iter().map(ToString::to_string).collect()),
            deny: Some(c.targets.deny().iter().map(ToString::to_string).collect()),
        }),
        identity: c.auth.identity.as_ref().map(|_| RawIdentity {
            private_key: Some(REDACTED.to_owned()),
        }),
        clients: (!client && !c.auth.clients.is_empty()).then(|| {
            c.auth
                .clients
                .iter()
                .map(|k| RawClient {
                    name: Some(k.name.clone()),
                    public_key: Some(k.public_key.to_hex()),
                })
                .collect()
        }),
        limits: (!client).then(|| {
            let l = &c.limits;
            RawLimits {
                streams_per_session: int(l.streams_per_session),
                dials_per_session: int(l.dials_per_session),
                lookups_per_session: int(l.lookups_per_session),
                udp_associations_per_session: int(l.udp_associations_per_session),
                sessions_per_address: int(l.sessions_per_address),
                lookups: int(l.lookups),
            }
        }),
    };
    let body = serde_yaml_ng::to_string(&raw)
        .expect("invariant: raw config holds only strings, numbers, bools and lists");
    format!("# effective rawtun config: every default filled in, keys redacted\n{body}")
}
