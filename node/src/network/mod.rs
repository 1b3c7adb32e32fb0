//! Layer 3, the network boundary: everything that lets bytes leave or enter the site. The
//! libp2p transport ([`p2p`], the only module that names libp2p), the site policy ([`policy`]),
//! the tamper-evident audit log ([`audit`]), the node actor that joins them ([`node`]:
//! membership proofs, envelopes in and out), consortium files and certificates
//! ([`consortium`]), the control socket ([`control`]) and `fedanno node run` ([`daemon`], the
//! composition root). Nothing leaves except through `node → policy → audit → p2p`.

pub mod audit;
pub mod consortium;
pub mod control;
pub mod daemon;
pub mod kinds;
pub mod node;
pub mod p2p;
pub mod policy;
