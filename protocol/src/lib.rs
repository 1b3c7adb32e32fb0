//! `fedanno-protocol`: everything two fedanno sites must agree on, and nothing that does I/O.
//!
//! This crate owns the identifiers that may cross a site boundary ([`ids`]), the explicit size
//! limits every decoder checks before it allocates ([`limits`]), the one canonical encoding
//! ([`codec`]), the cryptographic primitives and signature domains ([`crypto`]), consortium trust
//! ([`cert`]), the application messages ([`wire`]), the signed, optionally sealed envelope they
//! travel in ([`envelope`]), and SA-v1 secure aggregation by pairwise masking ([`secagg`]). It
//! must never depend on tokio, libp2p, rusqlite or any DICOM crate, never read a clock (time is
//! passed in), and never panic on input: the lint guard below turns `unwrap`, `expect`, `panic!`
//! and unchecked indexing into compile errors outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod cert;
pub mod codec;
pub mod crypto;
pub mod envelope;
pub mod ids;
pub mod jobs;
pub mod limits;
pub mod membership;
pub mod merkle;
pub mod reader_study;
pub mod secagg;
pub mod wire;
pub mod witness;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod testkit;

/// Version of the wire protocol. Every message carries it; a peer speaking another version is
/// refused rather than guessed at. Version 2: `wire::Request` and `wire::Response` lost their
/// unused `Hello`/`Ack` variants, renumbering the variants after them. Version 3: witnessing
/// follows C2SP tlog-witness and tlog-cosignature (`Request::Witness` carries the old size and
/// a consistency proof; co-signatures sign the `cosignature/v1` message).
pub const PROTOCOL_VERSION: u16 = 3;
