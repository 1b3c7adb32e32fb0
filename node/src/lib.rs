//! `fedanno-node`: the site node. Everything that does I/O lives here; the wire types and
//! limits live in `fedanno-protocol`, the statistics in `fedanno-stats`. The modules are the
//! layers of ARCHITECTURE.md, each built on the ones before it:
//!
//! 1. [`site`]: the site directory, configuration, keys, the store, DICOM and ingest;
//! 2. [`annotations`]: the annotation model, NIfTI, imports and exports, curation;
//! 3. [`network`]: transport, policy, audit log, the node actor, consortium, daemon;
//! 4. [`reader_studies`]: cross-site reader studies, their jobs, rounds and reports;
//! 5. [`tools`]: the command line, synthetic data, benchmarks and the demo.

#[macro_use]
pub mod vocabulary;

pub mod annotations;
pub mod errors;
pub mod network;
pub mod reader_studies;
pub mod site;
pub mod tools;
