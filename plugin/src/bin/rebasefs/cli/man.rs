//! `rebasefs man --out DIR` (hidden): writes the man pages, generated from the command
//! line's own definitions so they always describe the binary that wrote them.
//!
//! `rebasefs.1` (the clap definition, with a section on the mount program), one
//! `rebasefs-SUBCOMMAND.1` per subcommand that exists at build time (the hidden `hook`
//! included: administrators install it), and `rebasefs-mount-program.1`, the mount
//! program's `--help` text (its grammar is fuse-overlayfs's, parsed by rebasefs-fuse, not
//! clap). The packages (packaging/build.sh) install them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use super::Cli;

/// The mount program's page name (section 1).
const MOUNT_PROGRAM_PAGE: &str = "rebasefs-mount-program";

/// Writes every page into `out` (created if missing); prints the files written.
pub fn run(out: &Path) -> anyhow::Result<i32> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let mut written = Vec::new();
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "man") {
        let man = Man::new(sub.clone());
        written.push(write_page(out, &man.get_filename(), |w| man.render(w))?);
    }
    let man = Man::new(cli.clone());
    written.push(write_page(out, &man.get_filename(), |w| {
        man.render(w)?;
        mount_program_section(&cli).to_writer(w)
    })?);
    written.push(write_page(out, &format!("{MOUNT_PROGRAM_PAGE}.1"), |w| {
        mount_program_page().to_writer(w)
    })?);
    for path in written {
        println!("{}", path.display());
    }
    Ok(0)
}

fn write_page(
    out: &Path,
    name: &str,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<PathBuf> {
    let path = out.join(name);
    let mut page = Vec::new();
    render(&mut page).with_context(|| format!("rendering {name}"))?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The main page's closing sections: how the binary is also the mount program, and the
/// other pages.
fn mount_program_section(cli: &clap::Command) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["MOUNT PROGRAM"]).text([roman(
        "Invoked with options instead of a subcommand, rebasefs is containers-storage's overlay \
         mount_program, a drop-in replacement for fuse-overlayfs: ",
    )]);
    roff.text([
        bold("rebasefs -o lowerdir=TOP:...:BASE,upperdir=U,workdir=W MOUNTPOINT"),
        roman(". Its options are in "),
        bold(MOUNT_PROGRAM_PAGE),
        roman("(1)."),
    ]);
    roff.control("SH", ["SEE ALSO"]);
    let mut pages: Vec<String> = cli
        .get_subcommands()
        .filter(|s| s.get_name() != "man")
        .map(|s| format!("rebasefs-{}(1)", s.get_name()))
        .collect();
    pages.push(format!("{MOUNT_PROGRAM_PAGE}(1)"));
    pages.extend(["podman(1)".into(), "containers-storage.conf(5)".into()]);
    roff.text([roman(pages.join(", "))]);
    roff
}

/// The mount program's page: its `--help` text, preformatted.
fn mount_program_page() -> Roff {
    let usage = rebasefs_fuse::mount_program::usage();
    let mut roff = Roff::new();
    roff.control("TH", [MOUNT_PROGRAM_PAGE.to_uppercase().as_str(), "1"])
        .control("SH", ["NAME"])
        .text([roman(format!(
            "{MOUNT_PROGRAM_PAGE} - rebasefs as containers-storage's overlay mount_program"
        ))])
        .control("SH", ["DESCRIPTION"])
        .control("nf", []);
    for line in usage.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    roff.control("SH", ["SEE ALSO"]).text([roman(
        "rebasefs(1), containers-storage.conf(5), fuse-overlayfs(1)",
    )]);
    roff
}
