//! The client's application-facing listeners (SOCKS5, TCP and UDP forwards), kept per rule so a
//! reload (SIGHUP) starts new rules and stops removed ones while unchanged rules — and every
//! tunnel session — keep running.

use anyhow::Context;
use tokio::sync::watch;

use super::client::TunnelConnector;
use super::target_of;
use crate::config::{Config, ForwardRule, Protocol, Socks5Rule};

#[derive(Clone, PartialEq, Eq)]
enum Rule {
    Socks5(Socks5Rule),
    Forward(ForwardRule),
}

/// Running listeners, each with its own stop signal.
#[derive(Default)]
pub struct FrontEnds {
    running: Vec<(Rule, watch::Sender<bool>)>,
}

fn rules(cfg: &Config) -> Vec<Rule> {
    cfg.socks5
        .iter()
        .cloned()
        .map(Rule::Socks5)
        .chain(cfg.forward.iter().cloned().map(Rule::Forward))
        .collect()
}

impl FrontEnds {
    /// Makes the running set match `cfg`: stops rules no longer present, starts new ones.
    /// On a bind error the rules started so far stay up and the error is returned.
    pub async fn apply(&mut self, cfg: &Config, connector: &TunnelConnector) -> anyhow::Result<()> {
        let wanted = rules(cfg);
        self.running.retain(|(rule, stop)| {
            let keep = wanted.contains(rule);
            if !keep {
                let _ = stop.send(true);
            }
            keep
        });
        for rule in wanted {
            if self.running.iter().any(|(r, _)| *r == rule) {
                continue;
            }
            if let Some(stop) = start(&rule, connector).await? {
                self.running.push((rule, stop));
            }
        }
        Ok(())
    }

    /// Stops accepting on every listener (connections already accepted end too).
    pub fn stop_all(&mut self) {
        for (_, stop) in self.running.drain(..) {
            let _ = stop.send(true);
        }
    }
}

async fn start(
    rule: &Rule,
    connector: &TunnelConnector,
) -> anyhow::Result<Option<watch::Sender<bool>>> {
    let (stop_tx, stop) = watch::channel(false);
    match rule {
        Rule::Socks5(r) => {
            let listener = tokio::net::TcpListener::bind(r.listen)
                .await
                .with_context(|| format!("socks5: cannot listen on {}", r.listen))?;
            let auth = r.auth.as_ref().map(|c| crate::proxy::Socks5Auth {
                username: c.username.clone(),
                password: c.password.clone(),
            });
            tracing::info!(listen = %r.listen, auth = auth.is_some(), "SOCKS5 ready");
            tokio::spawn(crate::proxy::serve_socks5(
                listener,
                auth,
                connector.clone(),
                stop,
            ));
        }
        Rule::Forward(r) => {
            let target = target_of(&r.target);
            match r.protocol {
                Protocol::Tcp => {
                    let listener = tokio::net::TcpListener::bind(r.listen)
                        .await
                        .with_context(|| format!("forward: cannot listen on {}", r.listen))?;
                    tracing::info!(listen = %r.listen, %target, "TCP forward ready");
                    tokio::spawn(crate::proxy::serve_tcp_forward(
                        listener,
                        target,
                        connector.clone(),
                        stop,
                    ));
                }
                Protocol::Udp => {
                    let socket = tokio::net::UdpSocket::bind(r.listen)
                        .await
                        .with_context(|| format!("forward: cannot listen on udp {}", r.listen))?;
                    tracing::info!(listen = %r.listen, %target, "UDP forward ready");
                    tokio::spawn(crate::proxy::serve_udp_forward(
                        socket,
                        target,
                        connector.clone(),
                        connector.stats.udp.clone(),
                        crate::proxy::UdpForwardLimits::default(),
                        stop,
                    ));
                }
            }
        }
    }
    Ok(Some(stop_tx))
}
