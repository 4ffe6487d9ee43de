//! The audit log: append-only and hash-chained. Each row's hash covers the
//! previous row's hash and every field, so a changed, removed or reordered
//! row breaks the chain from there on.

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use unicode_normalization::UnicodeNormalization;

use super::{MAX_ROWS, values};
use crate::error::Result;

/// An entry to append.
#[derive(Debug, Clone, Default)]
pub struct NewEntry {
    pub kind: String,
    /// Who did it: a member id, `peer:TENANT`, or `system`.
    pub actor: String,
    /// The local member it concerns.
    pub member: Option<String>,
    pub external_user: Option<String>,
    pub peer_tenant: Option<String>,
    pub detail: String,
}

impl NewEntry {
    pub fn new(kind: &str, actor: impl ToString) -> NewEntry {
        NewEntry {
            kind: kind.into(),
            actor: actor.to_string(),
            ..NewEntry::default()
        }
    }
    pub fn member(mut self, member: impl ToString) -> Self {
        self.member = Some(member.to_string());
        self
    }
    pub fn external(mut self, user: impl ToString) -> Self {
        self.external_user = Some(user.to_string());
        self
    }
    pub fn peer(mut self, tenant: impl ToString) -> Self {
        self.peer_tenant = Some(tenant.to_string());
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub at_ms: i64,
    pub kind: String,
    pub actor: String,
    pub member: Option<String>,
    pub external_user: Option<String>,
    pub peer_tenant: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub member: Option<String>,
    pub external_user: Option<String>,
    pub peer_tenant: Option<String>,
    pub text: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub after_seq: i64,
    pub limit: i64,
}

pub fn chain_hash(prev: &str, seq: i64, at_ms: i64, e: &NewEntry) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &seq.to_string(),
        &at_ms.to_string(),
        &e.kind,
        &e.actor,
        e.member.as_deref().unwrap_or(""),
        e.external_user.as_deref().unwrap_or(""),
        e.peer_tenant.as_deref().unwrap_or(""),
        &e.detail,
    ] {
        // Length-prefixed, so no two field lists hash alike.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    // Hex by hand: one allocation instead of one per byte; this runs for
    // every audited message.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in h.finalize() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Text as the audit search compares it: lowercase by Unicode's rules (so
/// "ÉCOLE" and "école" are one), and without the accents of the Latin
/// scripts (so "ecole" finds "École" too, as an admin typing on any
/// keyboard expects). Only the combining diacritical marks U+0300..U+036F
/// are dropped: the Japanese voicing marks and every other script stay as
/// written, so "が" and "か" remain two words. Done here rather than by
/// the database, whose LOWER() differs between SQLite (ASCII only) and
/// PostgreSQL (the server's locale).
pub fn fold(text: &str) -> String {
    // ASCII has no marks and decomposes to itself: most of what is audited.
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    text.nfd()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .flat_map(char::to_lowercase)
        .nfc()
        .collect()
}

/// A `LIKE` pattern matching `text` anywhere, its `%`, `_` and `\` taken
/// literally (the query says `ESCAPE '\'`).
pub fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in fold(text).chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Fills the folded text of entries written before it was kept, a page at
/// a time; returns how many. Each row's value depends on its own detail
/// only, so replicas doing this at once write the same.
pub async fn fill_folded(pool: &AnyPool) -> Result<u64> {
    let mut filled = 0;
    loop {
        let rows = sqlx::query("SELECT seq, detail FROM audit_log WHERE folded IS NULL LIMIT 500")
            .fetch_all(pool)
            .await?;
        if rows.is_empty() {
            return Ok(filled);
        }
        let mut tx = pool.begin().await?;
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let detail: String = row.try_get("detail")?;
            sqlx::query("UPDATE audit_log SET folded = $1 WHERE seq = $2")
                .bind(fold(&detail))
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        filled += rows.len() as u64;
    }
}

/// Appends within the caller's transaction, so the entry commits (or not)
/// with the change it records. Returns its seq.
pub async fn append(conn: &mut AnyConnection, entry: &NewEntry, at_ms: i64) -> Result<i64> {
    append_all(conn, std::slice::from_ref(entry), at_ms).await
}

/// Appends entries in order, in the caller's transaction, with one update
/// of the head and one insert per `MAX_ROWS`. Returns the last one's seq
/// (the head's, when there are none).
pub async fn append_all(conn: &mut AnyConnection, entries: &[NewEntry], at_ms: i64) -> Result<i64> {
    // Locks the head row: appends serialise on every backend.
    let head = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(entries.len() as i64)
        .fetch_one(&mut *conn)
        .await?;
    let last: i64 = head.try_get("seq")?;
    let mut prev: String = head.try_get("hash")?;
    let mut seq = last - entries.len() as i64;
    for chunk in entries.chunks(MAX_ROWS) {
        let sql = format!(
            "INSERT INTO audit_log (seq, at, kind, actor, member, external_user, peer_tenant, detail, prev_hash, hash, folded) \
             VALUES {}",
            values(conn, chunk.len(), 11)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for entry in chunk {
            seq += 1;
            let hash = chain_hash(&prev, seq, at_ms, entry);
            query = query
                .bind(seq)
                .bind(at_ms)
                .bind(entry.kind.as_str())
                .bind(entry.actor.as_str())
                .bind(entry.member.as_deref())
                .bind(entry.external_user.as_deref())
                .bind(entry.peer_tenant.as_deref())
                .bind(entry.detail.as_str())
                .bind(std::mem::replace(&mut prev, hash.clone()))
                .bind(hash)
                .bind(fold(&entry.detail));
        }
        query.execute(&mut *conn).await?;
    }
    // The head takes the last hash in the insert's trigger
    // (`audit_log_moves_head`, which matches only the row at the head's seq).
    Ok(last)
}

fn entry_from_row(r: &AnyRow) -> Result<Entry> {
    Ok(Entry {
        seq: r.try_get("seq")?,
        at_ms: r.try_get("at")?,
        kind: r.try_get("kind")?,
        actor: r.try_get("actor")?,
        member: r.try_get("member")?,
        external_user: r.try_get("external_user")?,
        peer_tenant: r.try_get("peer_tenant")?,
        detail: r.try_get("detail")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

const COLUMNS: &str =
    "seq, at, kind, actor, member, external_user, peer_tenant, detail, prev_hash, hash";

/// Entries matching every given filter, oldest first. The statement names
/// only the filters given, so that the planner can use their indexes (a
/// `$n IS NULL OR …` form would have it walk the log by seq instead).
pub async fn search(conn: &mut AnyConnection, f: &Filter) -> Result<Vec<Entry>> {
    let text = f.text.as_deref().map(contains_pattern);
    let texts = [
        ("member = ?", f.member.as_deref()),
        ("external_user = ?", f.external_user.as_deref()),
        ("peer_tenant = ?", f.peer_tenant.as_deref()),
        (
            "(folded LIKE ? ESCAPE '\\' OR kind LIKE ? ESCAPE '\\')",
            text.as_deref(),
        ),
    ];
    let times = [("at >= ?", f.since_ms), ("at < ?", f.until_ms)];
    let given = texts
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(clause, _)| *clause)
        .chain(times.iter().filter(|(_, v)| v.is_some()).map(|(c, _)| *c));
    let mut sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1");
    let mut n = 1;
    for clause in given {
        n += 1;
        sql.push_str(" AND ");
        sql.push_str(&clause.replace('?', &format!("${n}")));
    }
    sql.push_str(&format!(" ORDER BY seq LIMIT ${}", n + 1));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(f.after_seq);
    for value in texts.iter().filter_map(|(_, v)| *v) {
        query = query.bind(value);
    }
    for value in times.iter().filter_map(|(_, v)| *v) {
        query = query.bind(value);
    }
    let rows = query.bind(f.limit).fetch_all(conn).await?;
    rows.iter().map(entry_from_row).collect()
}

/// Walks the whole chain; returns the number of entries, or the first seq
/// whose hash or link does not hold.
pub async fn verify(conn: &mut AnyConnection) -> Result<Result<i64, (i64, String)>> {
    let mut prev = String::new();
    let mut after = 0i64;
    let mut count = 0i64;
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 1000"
        )))
        .bind(after)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let e = entry_from_row(row)?;
            if e.seq != after + 1 {
                return Ok(Err((after + 1, format!("entry {} is missing", after + 1))));
            }
            if e.prev_hash != prev {
                return Ok(Err((e.seq, "does not link to the entry before it".into())));
            }
            let new = NewEntry {
                kind: e.kind.clone(),
                actor: e.actor.clone(),
                member: e.member.clone(),
                external_user: e.external_user.clone(),
                peer_tenant: e.peer_tenant.clone(),
                detail: e.detail.clone(),
            };
            if chain_hash(&prev, e.seq, e.at_ms, &new) != e.hash {
                return Ok(Err((e.seq, "its contents do not match its hash".into())));
            }
            prev = e.hash;
            after = e.seq;
            count += 1;
        }
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let (head_seq, head_hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
    if head_seq != after || head_hash != prev {
        return Ok(Err((head_seq, "the newest entries were removed".into())));
    }
    Ok(Ok(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_case_and_latin_accents() {
        for spelling in ["École", "ÉCOLE", "école", "ecole", "ECOLE", "E\u{301}cole"] {
            assert_eq!(fold(spelling), "ecole", "{spelling:?}");
        }
        assert_eq!(fold("Ünïcødé"), "unicødé".replace('é', "e"));
        assert_eq!(fold("ΣΟΦΊΑ"), "σοφια");
        assert_eq!(
            fold("Room 01J SEQ 7: text: Hello"),
            "room 01j seq 7: text: hello"
        );
    }

    #[test]
    fn other_scripts_keep_their_marks() {
        assert_eq!(fold("が"), "が");
        assert_ne!(fold("が"), fold("か"));
        assert_eq!(fold("日本語 한국어"), "日本語 한국어");
    }

    /// Entries appended together chain exactly as appended one by one:
    /// the log verifies, each links to the one before, and the head holds
    /// the last one's hash.
    #[tokio::test]
    async fn entries_appended_together_chain_as_one_by_one() {
        let t = crate::store::testing::temp_store().await;
        let mut conn = t.conn().await;
        let entry =
            |n: usize| NewEntry::new("room.text", "alice@a.example").detail(format!("m{n}"));
        let first = append(&mut conn, &entry(0), 1_000).await.unwrap();
        let group: Vec<NewEntry> = (1..=300).map(entry).collect();
        let last = append_all(&mut conn, &group, 2_000).await.unwrap();
        assert_eq!(last, first + 300);
        let after = append(&mut conn, &entry(301), 3_000).await.unwrap();
        assert_eq!(after, last + 1);
        assert_eq!(verify(&mut conn).await.unwrap(), Ok(after));
        let all = search(
            &mut conn,
            &Filter {
                limit: 1_000,
                ..Filter::default()
            },
        )
        .await
        .unwrap();
        let details: Vec<&str> = all.iter().map(|e| e.detail.as_str()).collect();
        let expected: Vec<String> = (0..=301).map(|n| format!("m{n}")).collect();
        assert_eq!(details, expected);
        for pair in all.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash);
        }
    }

    #[tokio::test]
    async fn a_search_matches_every_filter_given_and_only_those() {
        let t = crate::store::testing::temp_store().await;
        let mut conn = t.conn().await;
        let entries = [
            (
                "room.text",
                Some("alice@a.example"),
                Some("carol@b.example"),
                "hello Carol",
                1_000,
            ),
            (
                "room.text",
                Some("bob@a.example"),
                Some("carol@b.example"),
                "hello again",
                2_000,
            ),
            (
                "policy.changed",
                Some("alice@a.example"),
                None,
                "external on",
                3_000,
            ),
        ];
        for (kind, member, external, detail, at) in entries {
            let mut entry = NewEntry::new(kind, "admin@a.example").detail(detail.to_string());
            if let Some(m) = member {
                entry = entry.member(m);
            }
            if let Some(x) = external {
                entry = entry.external(x).peer("b.example");
            }
            append(&mut conn, &entry, at).await.unwrap();
        }
        let found = |f: Filter| {
            let t = &t;
            async move {
                let mut conn = t.conn().await;
                search(&mut conn, &f)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| e.detail)
                    .collect::<Vec<_>>()
            }
        };
        let all = || Filter {
            member: None,
            external_user: None,
            peer_tenant: None,
            text: None,
            since_ms: None,
            until_ms: None,
            after_seq: 0,
            limit: 100,
        };
        assert_eq!(found(all()).await.len(), 3);
        assert_eq!(
            found(Filter {
                member: Some("alice@a.example".into()),
                ..all()
            })
            .await,
            ["hello Carol", "external on"]
        );
        assert_eq!(
            found(Filter {
                external_user: Some("carol@b.example".into()),
                since_ms: Some(1_500),
                ..all()
            })
            .await,
            ["hello again"]
        );
        assert_eq!(
            found(Filter {
                peer_tenant: Some("b.example".into()),
                text: Some("HELLO".into()),
                until_ms: Some(1_500),
                ..all()
            })
            .await,
            ["hello Carol"]
        );
        assert_eq!(
            found(Filter {
                text: Some("policy.changed".into()),
                limit: 1,
                ..all()
            })
            .await,
            ["external on"]
        );
    }

    #[test]
    fn patterns_take_wildcards_literally() {
        assert_eq!(contains_pattern("%%%"), "%\\%\\%\\%%");
        assert_eq!(contains_pattern("a_b"), "%a\\_b%");
        assert_eq!(contains_pattern("c:\\dir"), "%c:\\\\dir%");
        assert_eq!(contains_pattern("ÉCOLE"), "%ecole%");
    }
}
