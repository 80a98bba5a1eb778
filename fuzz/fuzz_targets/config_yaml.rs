//! Fuzz target: arbitrary text as a config file. Loading must give a config or an error
//! that names the file, never a panic; a config that loads must print an effective YAML
//! that loads again to the same config (secrets are redacted there, so they are put back:
//! the shared key as a fixed stand-in, the private key as itself).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match rawtun::config::parse(text, "fuzz.yaml") {
        Err(e) => assert!(e.to_string().starts_with("fuzz.yaml")),
        Ok(cfg) => {
            let mut expected = cfg.clone();
            if expected.transport.kcp.key.is_some() {
                expected.transport.kcp.key = Some("fuzz-key".into());
            }
            if expected.auth.shared.is_some() {
                expected.auth.shared = Some("fuzz-key".into());
            }
            let mut yaml = cfg.to_effective_yaml();
            if let Some(secret) = &cfg.auth.identity {
                yaml = yaml.replace(
                    "private_key: <redacted>",
                    &format!("private_key: {}", secret.to_hex()),
                );
            }
            let yaml = yaml.replace("<redacted>", "fuzz-key");
            let again = rawtun::config::parse(&yaml, "effective.yaml")
                .unwrap_or_else(|e| panic!("effective config does not load: {e}\n{yaml}"));
            assert_eq!(again, expected, "effective config differs:\n{yaml}");
        }
    }
});
