//! Fuzz target: the tunnel's own headers — the open request (stream OPEN payload), the
//! connect result and the datagram header — from arbitrary bytes. Nothing may panic; what
//! decodes must encode back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rawtun::tunnel::{
    datagram_association, datagram_header_len, decode_datagram, encode_datagram, ConnectResult,
    OpenRequest,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = OpenRequest::decode(data) {
        let mut again = Vec::new();
        req.encode(&mut again);
        assert_eq!(again.len(), req.encoded_len());
        assert_eq!(OpenRequest::decode(&again).as_ref(), Ok(&req));
    }
    if let Ok(result) = ConnectResult::decode(data) {
        assert_eq!(&result.encode()[..], data);
    }
    if let Ok(d) = decode_datagram(data) {
        assert_eq!(datagram_association(data), Ok(d.association));
        let mut again = Vec::new();
        encode_datagram(d.association, &d.addr, d.payload, &mut again);
        assert_eq!(again.len(), datagram_header_len(&d.addr) + d.payload.len());
        let back = decode_datagram(&again).expect("an encoded datagram decodes");
        assert_eq!(back.addr, d.addr);
        assert_eq!(back.payload, d.payload);
    }
});
