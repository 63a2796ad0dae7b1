#![allow(clippy::expect_used, clippy::unwrap_used)]
//! The workspace's shape, as `docs/architecture.md` draws it: which function links which AWS
//! SDK (read from the document's table, compared with `cargo tree`), a domain crate with no SDK,
//! Lambda runtime or environment in it, and no two modules of a crate importing each other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const FUNCTIONS: [&str; 5] = [
    "invoke-with-cache",
    "batch-submit",
    "batch-status",
    "capacity",
    "metrics-publisher",
];

/// Every function reaches STS through `aws-config` (web identity, role assumption); the table
/// leaves it out.
const THROUGH_AWS_CONFIG: &str = "aws-sdk-sts";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The packages `package` links, its features resolved as `cargo build -p package` does.
fn linked_packages(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}"])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The table under "## Which function links which SDK": function → SDK crates.
fn documented_sdks() -> BTreeMap<String, BTreeSet<String>> {
    let path = workspace().join("docs/architecture.md");
    let text = fs::read_to_string(&path).expect("read docs/architecture.md");
    let section = text
        .split("## Which function links which SDK")
        .nth(1)
        .expect("docs/architecture.md has a section \"## Which function links which SDK\"");
    section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and its rule
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 2, "a row of two cells: {row}");
            let sdks = cells[1]
                .split(',')
                .map(|sdk| sdk.trim().trim_matches('`').to_owned())
                .filter(|sdk| !sdk.is_empty())
                .collect();
            (cells[0].trim_matches('`').to_owned(), sdks)
        })
        .collect()
}

#[test]
fn each_function_links_the_sdks_the_architecture_document_names_and_no_other() {
    let documented = documented_sdks();
    assert_eq!(
        documented
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        FUNCTIONS.into_iter().collect(),
        "docs/architecture.md names every function once"
    );
    for function in FUNCTIONS {
        let linked: BTreeSet<String> = linked_packages(function)
            .into_iter()
            .filter(|package| package.starts_with("aws-sdk-") && package != THROUGH_AWS_CONFIG)
            .collect();
        assert_eq!(
            linked, documented[function],
            "{function} links other AWS SDKs than docs/architecture.md says: give the function \
             only the shared features (adapters) it calls, or update the document"
        );
    }
}

#[test]
fn the_domain_links_no_sdk_no_lambda_runtime_and_reads_no_environment() {
    let refused = ["aws-", "lambda_", "lambda-", "hyper", "reqwest", "tokio"];
    let linked = linked_packages("domain");
    let offending: Vec<&String> = linked
        .iter()
        .filter(|package| refused.iter().any(|prefix| package.starts_with(prefix)))
        .collect();
    assert!(offending.is_empty(), "the domain crate links {offending:?}");

    for file in rust_files(&workspace().join("domain/src")) {
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("std::env") && !text.contains("env::var"),
            "{} reads the environment: read it in shared::config or the function's config",
            file.display()
        );
    }
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let mut circles = Vec::new();
    for source in crate_sources() {
        let edges = module_imports(&source);
        for (module, imports) in &edges {
            for imported in imports {
                if module < imported && reaches(&edges, imported, module) {
                    circles.push(format!("{}: {module} <-> {imported}", source.display()));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "modules that import each other (move what both need to a module that imports neither):\n{}",
        circles.join("\n")
    );
}

/// Every `src/` of the workspace's crates.
fn crate_sources() -> Vec<PathBuf> {
    let root = workspace();
    ["domain", "shared", "tests"]
        .into_iter()
        .map(|dir| root.join(dir))
        .chain(["functions", "tools"].into_iter().flat_map(|group| {
            fs::read_dir(root.join(group))
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .collect::<Vec<_>>()
        }))
        .map(|dir| dir.join("src"))
        .filter(|src| src.is_dir())
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// Top-level module → the top-level modules it names through `crate::`, test modules left out.
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let Some(module) = relative
            .components()
            .next()
            .and_then(|first| first.as_os_str().to_str())
            .map(|first| first.trim_end_matches(".rs").to_owned())
            .filter(|module| !["lib", "main"].contains(&module.as_str()))
        else {
            continue;
        };
        let text = fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (index, _) in code.match_indices("crate::") {
            let name: String = code[index + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module && name.starts_with(|c: char| c.is_lowercase()) {
                edges.entry(module.clone()).or_default().insert(name);
            }
        }
    }
    edges
}

fn reaches(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::from([from.to_owned()]);
    let mut next = vec![from.to_owned()];
    while let Some(module) = next.pop() {
        for imported in edges.get(&module).into_iter().flatten() {
            if imported == to {
                return true;
            }
            if seen.insert(imported.clone()) {
                next.push(imported.clone());
            }
        }
    }
    false
}
