//! Fuzz target: arbitrary bytes into the frame parser, for both link types. Any input must
//! give a value or an error, never a panic; a parsed frame must re-emit and parse back to
//! the same description and payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rawtun::wire::{emit_frame, header_len, parse_frame, LinkType};

fuzz_target!(|data: &[u8]| {
    for link in [LinkType::Ethernet, LinkType::RawIp] {
        let Ok(parsed) = parse_frame(link, data) else {
            continue;
        };
        let repr = parsed.repr;
        let at = header_len(&repr);
        let mut buf = vec![0u8; at + parsed.payload.len()];
        buf[at..].copy_from_slice(parsed.payload);
        let start = emit_frame(&repr, &mut buf, at, parsed.payload.len())
            .expect("a parsed frame fits in one IP packet when re-emitted without IP options");
        let again = parse_frame(link, &buf[start..]).expect("an emitted frame parses");
        assert_eq!(again.payload, parsed.payload);
        // VLAN tags and IPv6 flow labels are not carried in FrameRepr; the rest must match.
        assert_eq!(again.repr, repr);
    }
});
