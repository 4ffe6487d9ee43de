//! The browser app in Chromium against two companies' real nodes on their
//! web ports: `web/tests/e2e.test.mjs` (playwright-core driving Debian's
//! Chromium, one browser context per person) with each node's web URL and
//! credentials in its environment. The admins peer the nodes, allow
//! external messaging and connect a member each in the console; alice and
//! carol befriend by invitation link and chat; delivery, a cut stream, a
//! file, markup shown as text, carol becoming unknown, and the console
//! refusing a member's token. Acme has no LINE channel: its admin is
//! refused switching "Chat with LINE users" on but keeps the greeting and
//! the LINE connected members, and alice's profile says why she cannot add
//! LINE users. Globex has its LINE account on the stand-in LINE platform:
//! a LINE user bound to carol sends a LINE sticker and takes a message
//! back, and carol sees her invite (message ID, link, QR code) and the LINE
//! room with the user by name. Screenshots land in `target/browser/`.
//!
//! Needs Node.js, `npm ci` in `web/` and `/usr/bin/chromium` (or
//! `WORKS_CHROMIUM`); missing, the test fails and says how to install them.

use crate::support::line::{line_company, line_member_id};
use crate::support::{ADMIN_PASSWORD, PASSWORD, TestNode};
use std::path::{Path, PathBuf};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

fn check_prerequisites(web: &Path) {
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: run `npm ci` in web/"
    );
    let chromium = std::env::var_os("WORKS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        chromium.exists(),
        "{} is missing: `apt-get install -y chromium` (or set WORKS_CHROMIUM)",
        chromium.display()
    );
}

#[tokio::test]
async fn two_companies_chat_in_their_browsers() {
    let root = repository_root();
    let web = root.join("web");
    check_prerequisites(&web);
    let acme = TestNode::start("acme.example").await;
    let globex = line_company("globex.example", "Welcome to Globex on LINE").await;
    let alice = acme.member("alice").await;
    let carol = globex.line_member("carol").await;
    // A LINE user binds to carol, sends a LINE sticker, and takes a text back.
    let kenji = globex.line.add_user("Kenji Sato");
    globex.bound(&kenji, &carol).await;
    let (status, _) = globex
        .line
        .sticker(&kenji, "446", "1988")
        .await
        .expect("sticker");
    assert_eq!(status, 200);
    let (status, oops) = globex
        .line
        .text(&kenji, "oops, wrong chat")
        .await
        .expect("text");
    assert_eq!(status, 200);
    assert_eq!(
        globex.line.unsend(&kenji, &oops).await.expect("unsend"),
        200
    );

    let mut command = tokio::process::Command::new("node");
    command
        .args(["--test", "--test-concurrency=1", "tests/e2e.test.mjs"])
        .current_dir(&web)
        .env("WORKS_SCREENSHOTS", root.join("target/browser"))
        .kill_on_drop(true);
    command
        .env("WORKS_B_LINE_USER", line_member_id(&kenji.id))
        .env("WORKS_B_LINE_NAME", &kenji.display_name);
    for (key, node, member) in [("A", &acme, &alice.id), ("B", &globex.node, &carol.id)] {
        command
            .env(
                format!("WORKS_{key}_URL"),
                node.web.as_deref().expect("a web port"),
            )
            .env(format!("WORKS_{key}_ADMIN_ID"), &node.admin_id)
            .env(format!("WORKS_{key}_ADMIN_PASSWORD"), ADMIN_PASSWORD)
            .env(
                format!("WORKS_{key}_MEMBERS"),
                format!("{member}:{PASSWORD}"),
            );
    }
    let run = tokio::time::timeout(std::time::Duration::from_secs(300), command.output())
        .await
        .expect("the browser scenario finishes within 5 minutes")
        .expect("run node (Node.js 20 or later)");
    assert!(
        run.status.success(),
        "the browser scenario failed (screenshots in target/browser/):\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
