//! `fedanno init`: create a site (config.toml, keys, database).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::emit;
use crate::site;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Human display name of the site.
    #[arg(long)]
    site_name: String,
    /// Consortium-unique site id (default: derived from the name).
    #[arg(long)]
    site_id: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(dir: &Path, args: InitArgs) -> Result<ExitCode> {
    let r = site::init(dir, &args.site_name, args.site_id.as_deref())?;
    emit(args.json, &r, |r| {
        println!(
            "Created site {:?} (id {}) in {}",
            r.site_name, r.site_id, r.dir
        );
        println!("  config    {}", r.config);
        println!("  database  {}", r.database);
        println!("  signing key (Ed25519, public)  {}", r.keys.signing);
        println!("  sealing key (X25519, public)   {}", r.keys.sealing);
        println!(
            "Secret keys are in {}/keys (mode 0600); back them up offline.",
            r.dir
        );
    })?;
    Ok(ExitCode::SUCCESS)
}
