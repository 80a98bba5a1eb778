//! Fuzz target: what a local SOCKS5 client sends — greeting, RFC 1929 login, request, and a
//! UDP ASSOCIATE datagram header — parsed from arbitrary bytes. Nothing may panic; a parsed
//! request or UDP header must write back to bytes that parse to the same value.
//!
//! The parsers are async over `AsyncRead`; a byte slice never returns `Pending`, so one
//! poll with a no-op waker runs them to completion without a runtime.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use rawtun::proxy::socks5::message::{Greeting, PasswordRequest, Request, UdpHeader};

fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut f = pin!(f);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a parser over a byte slice returned Pending"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let _ = now(Greeting::read_from(&mut r));
    let mut r = data;
    let _ = now(PasswordRequest::read_from(&mut r));
    let mut r = data;
    if let Ok(request) = now(Request::read_from(&mut r)) {
        let mut out = Vec::new();
        now(request.write_to(&mut out)).expect("writing to a Vec succeeds");
        let mut back = &out[..];
        assert_eq!(now(Request::read_from(&mut back)).ok().as_ref(), Some(&request));
    }
    if let Ok((header, at)) = now(UdpHeader::parse(data)) {
        assert!(at <= data.len());
        let mut out = Vec::new();
        header.write(&mut out);
        let (back, len) = now(UdpHeader::parse(&out)).expect("a written header parses");
        assert_eq!(back, header);
        assert_eq!(len, out.len());
    }
});
