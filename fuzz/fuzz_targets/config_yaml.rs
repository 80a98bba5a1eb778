//! Fuzz target: arbitrary text as a config file. Loading must give a config or an error
//! that names the file, never a panic; a config that loads must print an effective YAML
//! that loads again to the same config (the key is redacted, so it is put back first).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match rawtun::config::parse(text, "fuzz.yaml") {
        Err(e) => assert!(e.to_string().starts_with("fuzz.yaml")),
        Ok(cfg) => {
            // The key is redacted in the effective config: compare with a plain one.
            let mut expected = cfg.clone();
            expected.transport.kcp.key = "fuzz-key".into();
            let yaml = cfg.to_effective_yaml().replace("<redacted>", "fuzz-key");
            let again = rawtun::config::parse(&yaml, "effective.yaml")
                .unwrap_or_else(|e| panic!("effective config does not load: {e}\n{yaml}"));
            assert_eq!(again, expected, "effective config differs:\n{yaml}");
        }
    }
});
