//! `rawtun check`'s look at the machine: would this config run here? Each finding is one
//! `# ok:`, `# warning:` or `# error:` line; errors make `check` exit non-zero.

use std::net::IpAddr;

use rawtun::config::{Config, Role};
use rawtun::daemon;
use rawtun::sys;

struct Report {
    errors: usize,
}

impl Report {
    fn ok(&mut self, what: &str) {
        println!("# ok: {what}");
    }
    fn warn(&mut self, what: &str) {
        println!("# warning: {what}");
    }
    fn error(&mut self, what: &str) {
        self.errors += 1;
        println!("# error: {what}");
    }
}

/// Prints the findings; returns the number of errors.
pub fn check(cfg: &Config) -> usize {
    let mut r = Report { errors: 0 };
    if sys::is_root_or_capable() {
        r.ok("privileges: root or CAP_NET_RAW");
    } else {
        r.error("privileges: rawtun needs root or CAP_NET_RAW + CAP_NET_ADMIN");
    }
    let peer: Option<IpAddr> = cfg.server.map(|s| s.ip());
    match daemon::resolve_network(cfg, peer) {
        Ok(net) => {
            let how = if net.detected {
                "detected"
            } else {
                "configured"
            };
            let mac = net.router_mac.map_or_else(
                || "answer to the sender's MAC".into(),
                |m| daemon::format_mac(&m),
            );
            r.ok(&format!(
                "network ({how}): interface {}, local address {}, next-hop MAC {mac}",
                net.interface, net.local_ip
            ));
            interface(&mut r, cfg, &net);
        }
        Err(e) => r.error(&format!("network: {e:#}")),
    }
    firewall(&mut r, cfg);
    ports(&mut r, cfg);
    let mtu = usize::from(cfg.transport.kcp.mtu);
    let rcv = usize::from(cfg.transport.kcp.rcvwnd) * mtu;
    let snd = usize::from(cfg.transport.kcp.sndwnd) * mtu;
    for w in sys::sysctl::check(rcv, snd, cfg.network.pcap_sockbuf) {
        r.warn(&w.to_string());
    }
    r.errors
}

fn interface(r: &mut Report, cfg: &Config, net: &daemon::Network) {
    match sys::interface_addrs(&net.interface) {
        Ok(addrs) if addrs.contains(&net.local_ip) => {}
        Ok(_) => r.error(&format!(
            "network: {} is not an address of {} (network.ipv4.addr / ipv6.addr)",
            net.local_ip, net.interface
        )),
        Err(e) => {
            r.error(&format!("network: interface {}: {e}", net.interface));
            return;
        }
    }
    // The largest frame: link + IP + TCP (with timestamps) + sealing + KCP packet.
    let ip = if net.local_ip.is_ipv6() { 40 } else { 20 };
    let frame_ip =
        ip + 32 + rawtun::crypto::HEADER_LEN + 1 + 16 + usize::from(cfg.transport.kcp.mtu);
    match sys::interface_mtu(&net.interface) {
        Ok(m) if frame_ip as u32 <= m => r.ok(&format!(
            "MTU: largest tunnel packet {frame_ip} B fits {}'s MTU {m}",
            net.interface
        )),
        Ok(m) => r.error(&format!(
            "MTU: tunnel packets reach {frame_ip} B but {}'s MTU is {m}: lower transport.kcp.mtu to {}",
            net.interface,
            (m as usize).saturating_sub(frame_ip - usize::from(cfg.transport.kcp.mtu))
        )),
        Err(e) => r.warn(&format!("MTU of {}: {e}", net.interface)),
    }
}

fn firewall(r: &mut Report, cfg: &Config) {
    let side = match daemon::firewall_side(cfg, None) {
        Ok(s) => s,
        Err(e) => {
            r.error(&format!("firewall: {e:#}"));
            return;
        }
    };
    let rules = sys::firewall::RuleSet::new(side, None);
    let state = rules.present();
    match (cfg.firewall.auto, state) {
        (true, _) => r.ok(&format!(
            "firewall: firewall.auto installs the {} rules ({}) at start",
            rules.backend.as_str(),
            rules.comment()
        )),
        (false, Ok(sys::firewall::RuleState::All)) => r.ok("firewall: rules in place"),
        (false, Ok(state)) => r.error(&format!(
            "firewall: firewall.auto is off and the rules are {state}: run `rawtun firewall apply -c FILE`"
        )),
        (false, Err(e)) => r.error(&format!("firewall: {e}")),
    }
}

fn ports(r: &mut Report, cfg: &Config) {
    if cfg.role != Role::Client {
        return;
    }
    let listens = cfg
        .socks5
        .iter()
        .map(|s| s.listen)
        .chain(cfg.forward.iter().map(|f| f.listen));
    for addr in listens {
        match std::net::TcpListener::bind(addr) {
            Ok(_) => {}
            Err(e) => r.error(&format!(
                "port {addr}: cannot listen ({e}); another program (or a running rawtun) holds it"
            )),
        }
    }
}
