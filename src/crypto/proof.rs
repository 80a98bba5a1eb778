//! Proofs a server checks with one or two PRF calls before it keeps state or answers:
//! the SYN proof, the probe a client sends when it hears nothing, and the reset a server
//! sends back to a valid probe for a flow it has no session for.
//!
//! **SYN proof** (in fields every SYN has, so the SYN looks like any other):
//!
//! ```text
//! ISN   = PRF(open, "rawtun v2 syn" ‖ binding ‖ t)[..4]      t: the client's Unix time in ms
//! mask  = PRF(open, "rawtun v2 syn mask" ‖ binding ‖ ISN)[..4]
//! TSval = (t mod 2^32) + mask
//! ```
//!
//! The server unmasks `t` with the mask the ISN selects (one PRF) and checks the ISN (a
//! second). The mask depends on the ISN, so every connection's TSval has its own offset
//! (one offset per server would let an observer tie together the SYNs of all clients behind
//! NAT, whose binding is empty). Retransmitted SYNs are identical.
//!
//! **Probe** (client → server, when nothing authenticated came back for a while) and
//! **reset** (server → client) look like data packets: random bytes of a random length in
//! the range of short data packets; nothing is echoed and no byte is constant:
//!
//! ```text
//! probe:  | nonce (12) | id ⊕ m[0..8] (8) | t ⊕ m[8..16] (8) | tag (16) | random (0..76) |
//!           m   = PRF(id_key, "rawtun v2 probe mask" ‖ nonce)
//!           tag = PRF(reset_key(client), "rawtun v2 probe" ‖ flow ‖ nonce ‖ id ‖ t)
//! reset:  | nonce' (12) | tag (16) | random (17..92) |
//!           tag = PRF(reset_key(client), "rawtun v2 reset" ‖ flow ‖ probe nonce ‖ nonce')
//! ```
//!
//! `flow` is the flow's addresses and ports *as the server saw them* (sent to the client in
//! msg2), so a probe copied to another address fails, and a reset only ends the flow whose
//! probe it answers. The reset key comes from the client's and server's static keys, so
//! only that client and the server can make either message.

use rand::{CryptoRng, RngCore};

use super::freshness::widen_ms;
use super::key::{ClientId, ClientIdentity, ServerIdentity};
use super::prf::{ct_eq, Binding, Prf};

/// Probe nonce bytes.
pub const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes of a probe before its random tail.
const PROBE_BODY: usize = NONCE_LEN + 8 + 8 + TAG_LEN;
/// Bytes of a reset before its random tail.
const RESET_BODY: usize = NONCE_LEN + TAG_LEN;
/// Shortest and longest probe or reset: the size range of short data packets (an
/// acknowledgement is 45 bytes sealed).
pub const SHORT_MIN: usize = 45;
pub const SHORT_MAX: usize = 120;

/// The SYN fields carrying a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynProof {
    pub isn: u32,
    pub tsval: u32,
}

fn syn_mask(open: &Prf, binding: &Binding, isn: u32) -> u32 {
    open.u32(&[
        b"rawtun v2 syn mask",
        binding.as_bytes(),
        &isn.to_be_bytes(),
    ])
}

fn syn_isn(open: &Prf, binding: &Binding, t_ms: u64) -> u32 {
    open.u32(&[b"rawtun v2 syn", binding.as_bytes(), &t_ms.to_be_bytes()])
}

/// The client's SYN proof for time `t_ms`.
pub fn syn_proof(client: &ClientIdentity, binding: &Binding, t_ms: u64) -> SynProof {
    let isn = syn_isn(&client.open, binding, t_ms);
    SynProof {
        isn,
        tsval: (t_ms as u32).wrapping_add(syn_mask(&client.open, binding, isn)),
    }
}

/// The time a SYN with this ISN and TSval claims under `identity`'s key (one PRF); then
/// [`check_syn`] checks the ISN for it.
pub fn syn_time(
    identity: &ServerIdentity,
    binding: &Binding,
    isn: u32,
    tsval: u32,
    now_ms: u64,
) -> u64 {
    let mask = syn_mask(&identity.open, binding, isn);
    widen_ms(tsval.wrapping_sub(mask), now_ms)
}

/// True if the SYN's ISN proves knowledge of `identity`'s open key for time `t_ms`.
pub fn check_syn(identity: &ServerIdentity, binding: &Binding, isn: u32, t_ms: u64) -> bool {
    let want = syn_isn(&identity.open, binding, t_ms);
    ct_eq(&want.to_be_bytes(), &isn.to_be_bytes())
}

fn random_len(rng: &mut impl RngCore, body: usize) -> usize {
    let min = SHORT_MIN.max(body);
    min + (rng.next_u32() as usize) % (SHORT_MAX - min + 1)
}

fn probe_mask(id_key: &Prf, nonce: &[u8]) -> [u8; 16] {
    id_key.compute(&[b"rawtun v2 probe mask", nonce])
}

/// Writes a probe into `out` (at least [`SHORT_MAX`] bytes); returns its length and nonce.
pub fn write_probe(
    client: &ClientIdentity,
    flow: &Binding,
    t_ms: u64,
    rng: &mut impl CryptoRng,
    out: &mut [u8],
) -> Option<(usize, [u8; NONCE_LEN])> {
    let len = random_len(rng, PROBE_BODY);
    let out = out.get_mut(..len)?;
    rng.fill_bytes(out);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&out[..NONCE_LEN]);
    let m = probe_mask(&client.id, &nonce);
    let t = t_ms.to_be_bytes();
    let tag = client.reset.compute(&[
        b"rawtun v2 probe",
        flow.as_bytes(),
        &nonce,
        &client.client_id.0,
        &t,
    ]);
    for i in 0..8 {
        out[NONCE_LEN + i] = client.client_id.0[i] ^ m[i];
        out[NONCE_LEN + 8 + i] = t[i] ^ m[8 + i];
    }
    out[NONCE_LEN + 16..PROBE_BODY].copy_from_slice(&tag);
    Some((len, nonce))
}

/// A probe that verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub client: ClientId,
    pub nonce: [u8; NONCE_LEN],
    pub t_ms: u64,
}

/// If `packet` is a probe from one of `identity`'s clients for `flow`, who and when. Costs
/// one PRF unless the hidden id names a client.
pub fn check_probe(identity: &ServerIdentity, flow: &Binding, packet: &[u8]) -> Option<Probe> {
    if !(SHORT_MIN..=SHORT_MAX).contains(&packet.len()) {
        return None;
    }
    let nonce: [u8; NONCE_LEN] = packet.get(..NONCE_LEN)?.try_into().ok()?;
    let m = probe_mask(&identity.id, &nonce);
    let mut id = [0u8; 8];
    let mut t = [0u8; 8];
    for i in 0..8 {
        id[i] = packet[NONCE_LEN + i] ^ m[i];
        t[i] = packet[NONCE_LEN + 8 + i] ^ m[8 + i];
    }
    let client = identity.client_by_id(&ClientId(id))?;
    let want = client
        .reset
        .compute(&[b"rawtun v2 probe", flow.as_bytes(), &nonce, &id, &t]);
    ct_eq(&want, &packet[NONCE_LEN + 16..PROBE_BODY]).then_some(Probe {
        client: ClientId(id),
        nonce,
        t_ms: u64::from_be_bytes(t),
    })
}

/// Writes the reset answering `probe` into `out` (at least [`SHORT_MAX`] bytes); returns
/// its length. `None` if the probe's client is not `identity`'s.
pub fn write_reset(
    identity: &ServerIdentity,
    flow: &Binding,
    probe: &Probe,
    rng: &mut impl CryptoRng,
    out: &mut [u8],
) -> Option<usize> {
    let client = identity.client_by_id(&probe.client)?;
    let len = random_len(rng, RESET_BODY + 17);
    let out = out.get_mut(..len)?;
    rng.fill_bytes(out);
    let tag = client.reset.compute(&[
        b"rawtun v2 reset",
        flow.as_bytes(),
        &probe.nonce,
        &out[..NONCE_LEN],
    ]);
    out[NONCE_LEN..RESET_BODY].copy_from_slice(&tag);
    Some(len)
}

/// True if `packet` is the server's reset answering one of our `probes` for `flow`.
pub fn check_reset(
    client: &ClientIdentity,
    flow: &Binding,
    probes: &[[u8; NONCE_LEN]],
    packet: &[u8],
) -> bool {
    if !(SHORT_MIN..=SHORT_MAX).contains(&packet.len()) {
        return false;
    }
    let (head, tag) = (&packet[..NONCE_LEN], &packet[NONCE_LEN..RESET_BODY]);
    probes.iter().any(|nonce| {
        let want = client
            .reset
            .compute(&[b"rawtun v2 reset", flow.as_bytes(), nonce, head]);
        ct_eq(&want, tag)
    })
}

#[cfg(test)]
mod tests;
