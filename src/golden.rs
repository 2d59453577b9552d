//! Golden-file comparison for message tests: the expected text is checked in next to the input, so a change
//! in wording shows up in review as a diff. `UPDATE_GOLDEN=1 cargo test` rewrites the files.

use std::path::Path;

#[track_caller]
pub(crate) fn compare(expected_file: &Path, got: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(expected_file, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(expected_file).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            expected_file.display()
        )
    });
    assert_eq!(
        got,
        want,
        "output differs from {} (UPDATE_GOLDEN=1 rewrites it)",
        expected_file.display()
    );
}
