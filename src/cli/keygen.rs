//! `rawtun keygen`: key pairs for a key per client, printed as the YAML each side needs.

use rawtun::config::{Config, Role};
use rawtun::crypto::StaticSecret;

fn fresh() -> StaticSecret {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    StaticSecret::generate(&mut rng)
}

/// A new key pair, for either side.
pub fn pair() -> String {
    let k = fresh();
    format!(
        "# a new key pair: the private key goes in this machine's config, the public key to\n\
         # the other side (server: into each client's server.public_key; client: into the\n\
         # server's clients list). `rawtun keygen --client NAME -c server.yaml` does both.\n\
         identity:\n  private_key: \"{}\"   # secret\n# public_key: \"{}\"\n",
        k.to_hex(),
        k.public().to_hex()
    )
}

/// The public key of a config's `identity.private_key`.
pub fn public_of(cfg: &Config) -> anyhow::Result<String> {
    let k = cfg.auth.identity.as_ref().ok_or_else(|| {
        anyhow::anyhow!("the config has no identity.private_key (make one with rawtun keygen)")
    })?;
    Ok(format!("{}\n", k.public().to_hex()))
}

/// A key pair for client `name` of the server config `cfg`: the lines for the server and
/// the client's key setup.
pub fn for_client(cfg: &Config, name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        cfg.role == Role::Server,
        "--client needs the server's config (role: server)"
    );
    let server = cfg.auth.identity.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "the server config has no identity.private_key yet: add one from `rawtun keygen` \
             (and at least one client)"
        )
    })?;
    anyhow::ensure!(
        !cfg.auth.clients.iter().any(|c| c.name == name),
        "the server already has a client named {name:?}"
    );
    let client = fresh();
    let port = cfg.listen.map_or(0, |l| l.port());
    Ok(format!(
        "# 1. add to the server's config, under clients:, then reload it\n\
         #    (systemctl reload rawtun@server, or kill -HUP):\n\
         clients:\n  - name: \"{name}\"\n    public_key: \"{cpub}\"\n\
         \n\
         # 2. the client's config ({name}): its own key and the server's public key\n\
         #    (keep both secret: the server's public key is what lets a client reach it):\n\
         identity:\n  private_key: \"{cpriv}\"\n\
         server:\n  addr: \"SERVER_ADDRESS:{port}\"\n  public_key: \"{spub}\"\n",
        cpub = client.public().to_hex(),
        cpriv = client.to_hex(),
        spub = server.public().to_hex(),
    ))
}
