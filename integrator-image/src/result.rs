//! The result document: per-step timing while a command runs, and writing it (always
//! valid JSON of at most 4 KiB) to the result file, also when the command fails early.

use std::path::Path;
use std::time::Instant;

use lapidary_api::contract::{Outcome, ResultDocument, StepResult, MAX_RESULT_BYTES};

use crate::error::{Error, Result};

/// Runs `f` as the step `name`, recording its outcome and milliseconds in `doc`.
pub fn step<T>(doc: &mut ResultDocument, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let result = f();
    doc.steps.push(StepResult {
        name: name.to_owned(),
        outcome: if result.is_ok() {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        },
        ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    });
    result
}

/// Marks `doc` failed with `error`.
pub fn fail(doc: &mut ResultDocument, error: &Error) {
    doc.outcome = Outcome::Failed;
    doc.error = Some(error.to_string());
}

/// Writes `doc` to `path` as bounded JSON.
pub fn write(path: &Path, doc: &ResultDocument) -> Result<()> {
    let json = doc.to_bounded_json(MAX_RESULT_BYTES);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            std::fs::create_dir_all(parent)
                .map_err(Error::io(format!("create {}", parent.display())))?;
        }
    }
    std::fs::write(path, json).map_err(Error::io(format!("write result {}", path.display())))
}

/// Reads a result document written by a child process.
pub fn read(path: &Path) -> std::result::Result<ResultDocument, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read result {}: {e}", path.display()))?;
    ResultDocument::parse(&text).map_err(|e| e.to_string())
}

/// One human line summarizing a result.
pub fn summary_line(doc: &ResultDocument) -> String {
    let mut line = format!("{:?} {:?}", doc.role, doc.outcome).to_lowercase();
    if let Some(module) = &doc.module {
        line.push_str(&format!(" module={module}"));
    }
    if let Some(level) = doc.level {
        line.push_str(&format!(" level={level}"));
    }
    if let Some(commit) = &doc.commit {
        line.push_str(&format!(" commit={}", &commit[..commit.len().min(12)]));
    }
    if let Some(files) = doc.files_changed {
        line.push_str(&format!(" files={files}"));
    }
    if !doc.conflicts.is_empty() {
        line.push_str(&format!(" conflicts={}", doc.conflicts.join(",")));
    }
    let ms: u64 = doc.steps.iter().map(|s| s.ms).sum();
    line.push_str(&format!(" ms={ms}"));
    if let Some(error) = &doc.error {
        line.push_str(&format!(" error={error}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapidary_api::contract::Role;

    #[test]
    fn steps_record_outcome_and_results_round_trip() {
        let mut doc = ResultDocument::new(Role::Module, Outcome::Succeeded);
        let ok: Result<u32> = step(&mut doc, "move", || Ok(3));
        assert_eq!(ok.unwrap(), 3);
        let err: Result<()> = step(&mut doc, "push", || Err(Error::Input("x".into())));
        assert!(err.is_err());
        assert_eq!(doc.steps[0].outcome, Outcome::Succeeded);
        assert_eq!(doc.steps[1].outcome, Outcome::Failed);
        fail(&mut doc, &Error::Input("é".repeat(5000)));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/result.json");
        write(&path, &doc).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() <= MAX_RESULT_BYTES as u64);
        let back = read(&path).unwrap();
        assert_eq!(back.outcome, Outcome::Failed);
        assert!(summary_line(&back).starts_with("module failed"));
    }
}
