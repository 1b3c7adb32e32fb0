//! `fedanno-node`: the site node. Everything that does I/O lives here; the pure wire types and
//! limits live in `fedanno-protocol`. See ARCHITECTURE.md for the map of the house.
//!
//! Modules: [`cli`] (commands), [`config`] (site configuration), [`identity`] (keys),
//! [`site`] (site directory layout and `init`), [`store`] (SQLite, one thread), [`dicom`]
//! (headers, pseudonyms, geometry, writing), [`formats`] (NIfTI), [`ingest`], [`synth`]
//! (synthetic studies), [`bench`] (performance measurements), [`logging`], [`stats`] (the pure
//! quality engine: metrics, agreement, consensus), [`report`] (the study report as text, HTML and
//! JSON).

pub mod annotation;
pub mod app;
pub mod audit;
pub mod bench;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod consortium;
pub mod control;
pub mod curation;
pub mod daemon;
pub mod demo;
pub mod dicom;
pub mod formats;
pub mod identity;
pub mod ingest;
pub mod interchange;
pub mod logging;
pub mod net;
pub mod policy;
pub mod report;
pub mod site;
pub mod store;
pub mod study;
pub mod synth;
