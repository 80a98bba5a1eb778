//! Packet I/O: moving whole link-layer frames between the packet workers and an interface.
//!
//! The API is split the way libpcap is: a capture handle ([`PacketRx`], owned by a reader
//! thread) and an injection handle ([`PacketTx`], owned by a packet worker). Backends:
//!
//! - [`afpacket`]: TPACKET_V3 receive rings in a fanout group, one per capturing thread,
//!   with the filter in the kernel, and plain packet sockets for injection
//!   ([`open_afpacket`]); the default on Linux.
//! - [`pcap`]: libpcap capture + injection on a real interface ([`open_pcap`]).
//! - [`mem`]: a seeded in-memory network ([`MemNetwork`]) usable in virtual time by sans-IO
//!   tests, and a real-time adapter ([`mem_pair`]) implementing the traits over it.
//!
//! [`tunnel_filter`] builds the BPF expression both sides capture with.

pub mod afpacket;
mod filter;
pub mod mem;
pub mod pcap;

pub use crate::wire::LinkType;
pub use afpacket::{
    open_afpacket, AfPacket, AfPacketOptions, AfPacketRx, AfPacketTx, RingSpec, TX_BATCH,
};
pub use filter::tunnel_filter;
pub use mem::{mem_pair, LinkModel, LinkStats, MemNetwork, MemRx, MemTx};
pub use pcap::{open_pcap, IoError, PcapOptions, PcapRx, PcapTx};

/// Receive-side counters of a [`PacketRx`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxStats {
    /// Frames handed to the caller.
    pub received: u64,
    /// Frames the kernel dropped because the capture buffer was full (pcap statistics;
    /// refreshed on read timeouts and every few thousand frames).
    pub dropped_by_kernel: u64,
    /// Frames skipped because they did not fit the caller's buffer (or were cut by snaplen).
    pub oversize: u64,
}

/// The capture side of a packet backend, owned by one reader thread.
pub trait PacketRx: Send {
    /// Blocks up to the backend's read timeout (≤ 100 ms, so the caller can notice shutdown);
    /// `Ok(None)` on timeout. The frame is written into `buf`; returns its length (frames
    /// longer than `buf` are counted and skipped, never truncated).
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>>;

    /// Counters since the handle was opened.
    fn stats(&self) -> RxStats;
}

/// Frames a [`PacketTx`] could not send, and the last reason.
#[derive(Debug)]
pub struct SendFailure {
    /// How many frames were lost (not sent, and not kept for a later try).
    pub frames: usize,
    pub error: std::io::Error,
}

/// The injection side of a packet backend, owned by one packet worker.
pub trait PacketTx: Send {
    /// Sends one complete link-layer frame.
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()>;

    /// Queues a copy of `frame` to go out with the next [`PacketTx::flush`], or sooner when
    /// the backend's batch is full (then the frames that failed in that batch are
    /// reported here). Backends that do not batch send it at once.
    fn queue(&mut self, frame: &[u8]) -> Result<(), SendFailure> {
        self.send(frame)
            .map_err(|error| SendFailure { frames: 1, error })
    }

    /// Sends every queued frame (in order).
    fn flush(&mut self) -> Result<(), SendFailure> {
        Ok(())
    }
}
