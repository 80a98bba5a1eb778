//! Fuzz target: the HTTP CONNECT request head a local client sends, from arbitrary bytes
//! delivered in fuzzer-chosen pieces. Nothing may panic; a parsed request keeps every byte
//! after the head as early data.
//!
//! The reader is async over `AsyncRead`; a byte slice never returns `Pending`, so one poll
//! with a no-op waker runs it to completion without a runtime.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use rawtun::proxy::read_connect_request;

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
    if let Ok((_target, early)) = now(read_connect_request(&mut r)) {
        // The head ends with CRLFCRLF; what follows it in the bytes read is early data.
        assert!(early.len() <= data.len());
        assert!(data.ends_with(&early) || !r.is_empty());
    }
});
