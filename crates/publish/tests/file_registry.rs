//! The file registry (`--registry file:DIR`) on the rules every backend
//! shares: schema identity and each mode's history.

mod util;

use pitwall_publish::registry::FileRegistry;
use util::TestResult;

#[test]
fn file_identity_follows_the_whole_schema_and_modes_compare_their_history() -> TestResult {
    let dir = tempfile::tempdir()?;
    util::identity::identity_and_history(&FileRegistry::new(dir.path()), "file")
}
