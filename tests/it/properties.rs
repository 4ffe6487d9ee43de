//! Bad input, by property: ids, the admission rule and invitation links
//! under generated input, a bounded number of cases each (see `CASES`), plus
//! a replay of the fuzz targets' seeds and of every input they ever crashed
//! on.
//!
//! Every property runs on the public library only. No state is involved, so
//! a failing case is printed by proptest in its shrunk form; keep it as a
//! named case in the `refused` lists or in `fuzz/regressions/`, not in a
//! proptest regression file.

#[path = "../../fuzz/src/lib.rs"]
mod fuzz_checks;

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::sample::Index;
use tenant_node::admission::{Denied, Half, decide};
use tenant_node::contacts::invitations::{LinkClaims, parse_link, sign_link};
use tenant_node::error::Error;
use tenant_node::ids::{EventId, MemberId, RoomId, TenantId};

/// Cases per property: enough to reach every branch of these small parsers
/// many times over, few enough that the file runs in seconds.
const CASES: u32 = 512;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- generators ----

/// A valid member name, in any case.
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}"
}

/// A valid DNS label, in any case.
fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?"
}

/// A valid tenant id, in any case.
fn tenant() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 2..5).prop_map(|labels| labels.join("."))
}

/// A valid member id, in any case.
fn member() -> impl Strategy<Value = String> {
    (name(), tenant()).prop_map(|(name, tenant)| format!("{name}@{tenant}"))
}

/// Whitespace a caller may leave around an id.
fn padding() -> impl Strategy<Value = String> {
    "[ \t\n]{0,2}"
}

/// A valid ULID in its canonical spelling.
fn ulid() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(|bits| ulid::Ulid(bits).to_string())
}

/// Text anywhere from random to nearly an id, where parsers decide.
fn id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ a-zA-Z0-9@._\u{e5}\u{3000}-]{0,80}",
        "[0-9A-Za-z]{24,28}",
        "[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}",
        member(),
        (member(), any::<Index>(), any::<char>()).prop_map(|(id, at, c)| insert(&id, at, c)),
        (member(), any::<Index>()).prop_map(|(id, at)| remove(&id, at)),
        (ulid(), any::<Index>(), any::<char>()).prop_map(|(id, at, c)| replace(&id, at, c)),
    ]
}

/// Text anywhere from random to nearly an invitation link.
fn link_like() -> impl Strategy<Value = String> {
    let b64 = || prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| URL_SAFE_NO_PAD.encode(b));
    prop_oneof![
        any::<String>(),
        any::<String>().prop_map(|s| format!("works://invite/{s}")),
        (b64(), b64()).prop_map(|(p, s)| format!("works://invite/{p}.{s}")),
        (any::<String>(), b64())
            .prop_map(|(json, s)| format!("works://invite/{}.{s}", URL_SAFE_NO_PAD.encode(json))),
        (
            prop_oneof![any::<String>(), member()],
            any::<String>(),
            any::<i64>()
        )
            .prop_map(|(issuer, nonce, expires_at_ms)| sign_link(
                b"key",
                &LinkClaims {
                    issuer,
                    nonce,
                    expires_at_ms
                }
            )
            .expect("claims serialise")),
    ]
}

fn half() -> impl Strategy<Value = Half> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(enabled, connected, peered, blocked)| Half {
            enabled,
            connected,
            peered,
            blocked,
        },
    )
}

fn claims() -> impl Strategy<Value = LinkClaims> {
    (member(), any::<String>(), any::<i64>()).prop_map(|(issuer, nonce, expires_at_ms)| {
        LinkClaims {
            issuer,
            nonce,
            expires_at_ms,
        }
    })
}

/// A character a link could be altered to: its own alphabet, its
/// separators, whitespace, anything.
fn link_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                .chars()
                .collect::<Vec<_>>()
        ),
        prop::sample::select(vec!['.', ' ', '\n', '=', '+', '/', ':', '\u{e9}']),
        any::<char>(),
    ]
}

fn char_index(text: &str, at: Index) -> usize {
    text.char_indices()
        .nth(at.index(text.chars().count()))
        .map_or(text.len(), |(i, _)| i)
}

fn insert(text: &str, at: Index, c: char) -> String {
    let i = char_index(text, at);
    format!("{}{c}{}", &text[..i], &text[i..])
}

fn remove(text: &str, at: Index) -> String {
    let i = char_index(text, at);
    let mut out = text.to_string();
    if i < out.len() {
        out.remove(i);
    }
    out
}

fn replace(text: &str, at: Index, c: char) -> String {
    let i = char_index(text, at);
    let mut out = text.to_string();
    if i < out.len() {
        out.remove(i);
        out.insert(i, c);
    }
    out
}

// ---- the models the properties compare with ----

/// The canonical spelling of a member id, or None if it is not one: an
/// independent statement of the rule in `ids.rs` and `works-certs`.
fn member_model(text: &str) -> Option<String> {
    let (name, tenant) = text.trim().rsplit_once('@')?;
    let name = name.trim().to_ascii_lowercase();
    let first = name.bytes().next()?;
    let name_ok = name.len() <= MemberId::MAX_NAME_LEN
        && first.is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b));
    let tenant = tenant_model(tenant)?;
    name_ok.then(|| format!("{name}@{tenant}"))
}

fn tenant_model(text: &str) -> Option<String> {
    let tenant = text.trim().to_ascii_lowercase();
    let labels: Vec<&str> = tenant.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    (tenant.len() <= 253 && labels.len() >= 2 && labels.iter().all(label_ok)).then_some(tenant)
}

/// The canonical spelling of a ULID: 26 Crockford base-32 characters, any
/// case, at most 128 bits (so the first is 0 to 7).
fn ulid_model(text: &str) -> Option<String> {
    let upper = text.trim().to_ascii_uppercase();
    let alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    (upper.len() == 26
        && upper.chars().all(|c| alphabet.contains(c))
        && upper.as_bytes()[0] <= b'7')
        .then_some(upper)
}

/// The bare refusal the other company gets, whatever the reason.
fn not_found(local: &MemberId) -> String {
    format!("user {local} not found")
}

// ---- ids ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn id_parsers_never_panic_and_agree_with_the_model(text in id_like()) {
        let member = MemberId::parse(&text).ok().map(|id| id.to_string());
        prop_assert_eq!(member, member_model(&text));
        let tenant = TenantId::parse(&text).ok().map(|id| id.to_string());
        prop_assert_eq!(tenant, tenant_model(&text));
        let room = RoomId::parse(&text).ok().map(|id| id.to_string());
        prop_assert_eq!(room, ulid_model(&text));
        let event = EventId::parse(&text).ok().map(|id| id.to_string());
        prop_assert_eq!(event, ulid_model(&text));
    }

    #[test]
    fn parsed_member_ids_round_trip(text in id_like()) {
        if let Ok(id) = MemberId::parse(&text) {
            prop_assert_eq!(id.to_string(), id.as_str());
            prop_assert_eq!(MemberId::parse(id.as_str()), Ok(id.clone()));
            prop_assert_eq!(MemberId::parse(&id.to_string()), Ok(id.clone()));
            prop_assert_eq!(format!("{}@{}", id.name(), id.tenant()), id.as_str());
            // The bridge checks a claimed member by the text after its last
            // '@'; it must be the tenant the node then works with.
            let claimed = text.rsplit_once('@').map(|(_, t)| TenantId::parse(t));
            prop_assert_eq!(claimed, Some(Ok(id.tenant().clone())));
        }
    }

    #[test]
    fn valid_ids_in_any_case_parse_to_lowercase(
        id in member(),
        before in padding(),
        after in padding(),
    ) {
        let parsed = MemberId::parse(&format!("{before}{id}{after}"));
        prop_assert_eq!(parsed.map(|m| m.to_string()), Ok(id.to_ascii_lowercase()));
        let tenant = id.rsplit_once('@').map(|(_, t)| t).unwrap_or_default();
        let parsed = TenantId::parse(&format!("{before}{tenant}{after}"));
        prop_assert_eq!(parsed.map(|t| t.to_string()), Ok(tenant.to_ascii_lowercase()));
    }

    #[test]
    fn case_never_changes_what_an_id_parses_to(text in id_like()) {
        let upper = text.to_ascii_uppercase();
        let lower = text.to_ascii_lowercase();
        for other in [&upper, &lower] {
            prop_assert_eq!(MemberId::parse(&text).ok(), MemberId::parse(other).ok());
            prop_assert_eq!(TenantId::parse(&text).ok(), TenantId::parse(other).ok());
            prop_assert_eq!(RoomId::parse(&text).ok(), RoomId::parse(other).ok());
            prop_assert_eq!(EventId::parse(&text).ok(), EventId::parse(other).ok());
        }
    }

    #[test]
    fn ulids_round_trip_in_one_spelling(
        bits in any::<u128>(),
        lower in any::<bool>(),
        before in padding(),
        after in padding(),
    ) {
        let canonical = ulid::Ulid(bits).to_string();
        let spelled = if lower { canonical.to_ascii_lowercase() } else { canonical.clone() };
        let room = RoomId::parse(&format!("{before}{spelled}{after}"));
        prop_assert_eq!(room.map(|id| id.to_string()), Ok(canonical.clone()));
        let event = EventId::parse(&format!("{before}{spelled}{after}"));
        prop_assert_eq!(event.map(|id| id.to_string()), Ok(canonical));
    }

    #[test]
    fn bad_member_shapes_are_refused(
        name in name(),
        tenant in tenant(),
        one_label in label(),
        long_name in "[a-z]{65,90}",
        long_label in "[a-z]{64,80}",
        bad_start in prop::sample::select(vec!['.', '_', '-']),
        bad_char in prop::sample::select(vec!['+', '/', '!', '#', '@', '\0', '\u{e5}', '\u{130}']),
        at in any::<Index>(),
    ) {
        let refused = [
            format!("{name}{tenant}"),
            format!("@{tenant}"),
            format!("{name}@"),
            format!("{bad_start}{name}@{tenant}"),
            format!("{long_name}@{tenant}"),
            format!("{}@{tenant}", insert(&name, at, bad_char)),
            format!("{name}@{one_label}"),
            format!("{name}@{tenant}."),
            format!("{name}@.{tenant}"),
            format!("{name}@{}", tenant.replacen('.', "..", 1)),
            format!("{name}@-{tenant}"),
            format!("{name}@{tenant}-"),
            format!("{name}@{long_label}.{tenant}"),
            format!("{name}@{}", insert(&tenant, at, bad_char)),
            format!("{name}@{}", ["a".repeat(60).as_str(); 5].join(".")),
        ];
        for text in refused {
            prop_assert!(MemberId::parse(&text).is_err(), "accepted {:?}", text);
        }
    }

    #[test]
    fn bad_ulid_shapes_are_refused(
        id in ulid(),
        at in any::<Index>(),
        outside in prop::sample::select(vec!['I', 'L', 'O', 'U', 'i', 'l', 'o', 'u', '-', ' ', '\u{e9}']),
        too_big in prop::sample::select("89ABCDEFGHJKMNPQRSTVWXYZ".chars().collect::<Vec<_>>()),
    ) {
        let refused = [
            String::new(),
            remove(&id, at),
            format!("{id}0"),
            replace(&id, at, outside),
            format!("{too_big}{}", &id[1..]),
        ];
        for text in refused {
            prop_assert!(RoomId::parse(&text).is_err(), "accepted {:?}", text);
            prop_assert!(EventId::parse(&text).is_err(), "accepted {:?}", text);
        }
    }
}

// ---- admission ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_permit_needs_every_fact(local in member(), external in member(), half in half()) {
        let local = MemberId::parse(&local).expect("generated ids are valid");
        let external = MemberId::parse(&external).expect("generated ids are valid");
        let allowed = half.enabled && half.connected && half.peered && !half.blocked;
        match decide(&local, &external, half) {
            Ok(permit) => {
                prop_assert!(allowed, "permit for {:?}", half);
                prop_assert_eq!(permit.local(), &local);
                prop_assert_eq!(permit.external(), &external);
                prop_assert_eq!(permit.peer(), external.tenant());
            }
            Err(denied) => {
                prop_assert!(!allowed, "{:?} refused {:?}", denied, half);
                // Our own member is told a reason that is true.
                let true_reason = match denied {
                    Denied::ExternalDisabled => !half.enabled,
                    Denied::NotConnected => !half.connected,
                    Denied::NotPeered => !half.peered,
                    Denied::Blocked => half.blocked,
                    // `decide` never answers it: only rooms ask of the trash.
                    Denied::Deleted => false,
                };
                prop_assert!(true_reason, "{:?} for {:?}", denied, half);
                // The other company is told nothing of it.
                let to_peer = denied.to_peer(&local);
                prop_assert!(matches!(to_peer, Error::NotFound(_)), "{:?}", to_peer);
                prop_assert_eq!(to_peer.to_string(), not_found(&local));
            }
        }
    }

    #[test]
    fn every_refusal_looks_the_same_to_the_peer(local in member()) {
        let local = MemberId::parse(&local).expect("generated ids are valid");
        for denied in [Denied::ExternalDisabled, Denied::NotConnected, Denied::NotPeered, Denied::Blocked, Denied::Deleted] {
            prop_assert_eq!(denied.to_peer(&local).to_string(), not_found(&local));
        }
    }
}

// ---- invitation links ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_link_never_panics(text in link_like()) {
        if let Ok(parsed) = parse_link(&text) {
            prop_assert_eq!(MemberId::parse(&parsed.claims.issuer), Ok(parsed.issuer.clone()));
        }
        fuzz_checks::invitation_link(text.as_bytes());
    }

    #[test]
    fn signed_links_round_trip(
        claims in claims(),
        key in prop::collection::vec(any::<u8>(), 0..80),
        before in padding(),
        after in padding(),
    ) {
        let link = sign_link(&key, &claims).expect("claims serialise");
        let parsed = parse_link(&format!("{before}{link}{after}")).expect("a signed link parses");
        prop_assert_eq!(&parsed.claims, &claims);
        prop_assert_eq!(Ok(parsed.issuer.clone()), MemberId::parse(&claims.issuer));
        prop_assert!(parsed.signed_with(&key).expect("hmac takes any key"));
        // HMAC pads a short key with zeros, so change a byte rather than
        // append a zero to get a different key.
        let mut other = key.clone();
        match other.first_mut() {
            Some(first) => *first ^= 1,
            None => other.push(1),
        }
        prop_assert!(!parsed.signed_with(&other).expect("hmac takes any key"));
    }

    #[test]
    fn a_changed_character_breaks_the_link(
        claims in claims(),
        key in prop::collection::vec(any::<u8>(), 1..40),
        at in any::<Index>(),
        to in link_char(),
    ) {
        let link = sign_link(&key, &claims).expect("claims serialise");
        let changed = replace(&link, at, to);
        prop_assume!(changed != link);
        if let Ok(parsed) = parse_link(&changed) {
            prop_assert!(
                !parsed.signed_with(&key).expect("hmac takes any key"),
                "{:?} still verifies", changed
            );
        }
    }
}

/// The property above samples positions; here every position of one link
/// is changed to every character of its alphabet and to its separators.
#[test]
fn every_single_character_change_breaks_a_link() {
    let key = b"the issuer's key";
    let claims = LinkClaims {
        issuer: "alice@acme.example".into(),
        nonce: "AAECAwQFBgcICQoLDA0ODw".into(),
        expires_at_ms: 1_764_000_000_000,
    };
    let link = sign_link(key, &claims).expect("claims serialise");
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/: ";
    let mut changed_links = 0;
    for (at, original) in link.char_indices() {
        for to in alphabet.chars().filter(|&c| c != original) {
            let mut changed = link.clone();
            changed.replace_range(at..at + original.len_utf8(), &to.to_string());
            if let Ok(parsed) = parse_link(&changed) {
                assert!(
                    !parsed.signed_with(key).unwrap(),
                    "{changed:?} still verifies"
                );
            }
            changed_links += 1;
        }
    }
    assert!(changed_links > 100 * 60, "{changed_links}");
}

// ---- fuzz inputs ----

/// The fuzz targets' seeds (`fuzz/seeds/<target>/`) and every input a target
/// ever crashed on (`fuzz/regressions/<target>/`) must pass that target's
/// check.
#[test]
fn kept_fuzz_inputs_pass() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for kind in ["seeds", "regressions"] {
        let Ok(targets) = std::fs::read_dir(fuzz.join(kind)) else {
            continue;
        };
        for target in targets {
            let target = target.expect("a readable directory").path();
            let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
            assert!(
                fuzz_checks::TARGETS.contains(&name),
                "{} is not named after a fuzz target",
                target.display()
            );
            for input in std::fs::read_dir(&target).expect("a readable directory") {
                let input = input.expect("a readable entry").path();
                eprintln!("replaying {}", input.display());
                let data = std::fs::read(&input).expect("a readable file");
                assert!(fuzz_checks::replay(name, &data));
                replayed += 1;
            }
        }
    }
    assert!(replayed >= fuzz_checks::TARGETS.len(), "seeds are missing");
}

/// The bridge decoders on short random bytes: few decode, none may panic.
#[test]
fn bridge_decoders_take_any_bytes() {
    let mut runner = proptest::test_runner::TestRunner::new(config());
    for target in fuzz_checks::TARGETS {
        runner
            .run(&prop::collection::vec(any::<u8>(), 0..256), |data| {
                fuzz_checks::replay(target, &data);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{target}: {e}"));
    }
}
