//! Full-text search: an embedded tantivy index (BM25) that follows the database's change
//! log. Every entry write appends `(seq, entry_id)` to the `changes` table in the same
//! transaction; `SearchIndex::sync` applies the changes after the index's cursor (stored in
//! the tantivy commit payload) by re-reading those entries. Writers call `sync` right after
//! committing, searches call it before searching, and a background task calls it every
//! 500 ms, so several nodes sharing one PostgreSQL each keep an index that is correct
//! for whatever any node wrote. A missing, unreadable or foreign index (cursor ahead of
//! the database) is rebuilt from the database at start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, STRING,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::db::{Db, EntryRow};
use crate::error::SearchError;

const SCHEMA_VERSION: &str = "v4";

/// Entry ids (`0_` + 8 of `[0-9a-z]`) as a number, for a fast field (no doc store reads).
pub fn id_to_u64(id: &str) -> u64 {
    id.bytes().skip(2).fold(0u64, |acc, b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'z' => b - b'a' + 10,
            _ => 0,
        };
        acc * 36 + d as u64
    })
}

/// The inverse of [`id_to_u64`].
pub fn u64_to_id(mut n: u64) -> String {
    const A: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [b'0'; 8];
    for slot in buf.iter_mut().rev() {
        *slot = A[(n % 36) as usize];
        n /= 36;
    }
    format!("0_{}", String::from_utf8_lossy(&buf))
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    id_num: Field,
    partner: Field,
    kind: Field,
    status: Field,
    tag: Field,
    category: Field,
    created: Field,
    /// Name (three times), tags (twice), category levels, description, metadata values.
    all: Field,
}

// Every searched clause is a term query on a field indexed with frequencies, so that
// tantivy runs a conjunction of them with block-max WAND (top-k without scoring every
// match): the words on `all`, and the partner and filters on raw (untokenized) fields.
fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let raw = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let f = Fields {
        id: b.add_text_field("id", STRING),
        id_num: b.add_u64_field("id_num", NumericOptions::default().set_fast()),
        partner: b.add_text_field("partner", raw.clone()),
        kind: b.add_text_field("kind", raw.clone()),
        status: b.add_text_field("status", raw.clone()),
        tag: b.add_text_field("tag", raw.clone()),
        category: b.add_text_field("category", raw),
        created: b.add_i64_field(
            "created",
            NumericOptions::default().set_indexed().set_fast(),
        ),
        all: b.add_text_field("all", text),
    };
    (b.build(), f)
}

/// Hits are counted exactly up to this number (then `total_count` says "at least").
pub const COUNT_CAP: usize = 10_000;

/// Counts matching live documents, stopping at `cap`.
fn count_up_to(
    searcher: &tantivy::Searcher,
    query: &dyn Query,
    cap: usize,
) -> Result<usize, SearchError> {
    use tantivy::DocSet;
    let weight = query.weight(tantivy::query::EnableScoring::disabled_from_searcher(
        searcher,
    ))?;
    let mut count = 0usize;
    for seg in searcher.segment_readers() {
        let mut scorer = weight.scorer(seg, 1.0)?;
        let alive = seg.alive_bitset();
        let mut doc = scorer.doc();
        while doc != tantivy::TERMINATED {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                count += 1;
                if count >= cap {
                    return Ok(count);
                }
            }
            doc = scorer.advance();
        }
    }
    Ok(count)
}

/// Search filters (validated by the caller).
#[derive(Debug, Default, Clone)]
pub struct SearchFilter {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub tag: Option<String>,
    pub category: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

struct Writer {
    writer: IndexWriter,
    cursor: i64,
}

/// The index and its follower state.
#[derive(Clone)]
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Arc<Mutex<Writer>>,
    sync_lock: Arc<tokio::sync::Mutex<()>>,
}

fn metadata_text(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        serde_json::Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push(' ');
        }
        serde_json::Value::Bool(b) => {
            out.push_str(if *b { "true " } else { "false " });
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| metadata_text(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| metadata_text(x, out)),
        serde_json::Value::Null => {}
    }
}

impl SearchIndex {
    /// Opens the index at `dir`, creating it if needed (memory budget for bulk loads).
    pub fn open_dir(dir: &Path, heap_bytes: usize) -> Result<(SearchIndex, bool), SearchError> {
        let (schema, fields) = schema();
        let versioned: PathBuf = dir.join(SCHEMA_VERSION);
        std::fs::create_dir_all(&versioned).map_err(|e| {
            SearchError::Join(format!("cannot create {}: {e}", versioned.display()))
        })?;
        let mmap = tantivy::directory::MmapDirectory::open(&versioned)?;
        let (index, fresh) = match Index::open_or_create(mmap, schema.clone()) {
            Ok(i) => (i, false),
            Err(e) => {
                tracing::warn!(error = %e, "search index unreadable; rebuilding");
                let _ = std::fs::remove_dir_all(&versioned);
                std::fs::create_dir_all(&versioned).map_err(|e| {
                    SearchError::Join(format!("cannot create {}: {e}", versioned.display()))
                })?;
                let mmap = tantivy::directory::MmapDirectory::open(&versioned)?;
                (Index::create(mmap, schema, Default::default())?, true)
            }
        };
        let cursor = index
            .load_metas()?
            .payload
            .and_then(|p| p.parse::<i64>().ok());
        // Bulk loads (big heaps) index on two threads; the server's follower on one.
        let threads = if heap_bytes >= 200_000_000 { 2 } else { 1 };
        let writer: IndexWriter =
            index.writer_with_num_threads(threads, heap_bytes.max(15_000_000 * threads))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let needs_rebuild = fresh || cursor.is_none();
        Ok((
            SearchIndex {
                index,
                reader,
                fields,
                writer: Arc::new(Mutex::new(Writer {
                    writer,
                    cursor: cursor.unwrap_or(0),
                })),
                sync_lock: Arc::new(tokio::sync::Mutex::new(())),
            },
            needs_rebuild,
        ))
    }

    /// Opens the index and brings it up to date with `db` (rebuilding it if missing or stale).
    pub async fn open(dir: &Path, db: &Db) -> Result<SearchIndex, SearchError> {
        let (idx, needs_rebuild) = Self::open_dir(dir, 64_000_000)?;
        let max = db.max_change_seq().await?;
        let cursor = idx.cursor();
        if needs_rebuild || cursor > max {
            tracing::info!("rebuilding the search index from the database");
            idx.rebuild(db).await?;
        } else {
            idx.sync(db).await?;
        }
        Ok(idx)
    }

    pub fn cursor(&self) -> i64 {
        self.writer.lock().map(|w| w.cursor).unwrap_or(0)
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    fn doc(&self, e: &EntryRow) -> TantivyDocument {
        let f = &self.fields;
        let mut d = TantivyDocument::new();
        d.add_text(f.id, &e.id);
        d.add_u64(f.id_num, id_to_u64(&e.id));
        d.add_text(f.partner, e.partner_id.to_string());
        d.add_text(f.kind, &e.kind);
        d.add_text(f.status, &e.status);
        for t in &e.tags {
            d.add_text(f.tag, t);
        }
        for c in &e.categories {
            d.add_text(f.category, c);
        }
        d.add_i64(f.created, e.created_at);
        let mut all = String::with_capacity(512);
        for _ in 0..3 {
            all.push_str(&e.name);
            all.push(' ');
        }
        for _ in 0..2 {
            for t in &e.tags {
                all.push_str(t);
                all.push(' ');
            }
        }
        for c in &e.categories {
            // Category paths: every level's name.
            all.push_str(&c.replace('>', " "));
            all.push(' ');
        }
        all.push_str(&e.description);
        all.push(' ');
        for v in e.metadata.values() {
            metadata_text(v, &mut all);
        }
        d.add_text(f.all, all);
        d
    }

    /// Adds documents without deleting (bulk loads of new entries); does not commit.
    pub fn add_new(&self, entries: &[EntryRow]) -> Result<(), SearchError> {
        let w = self
            .writer
            .lock()
            .map_err(|_| SearchError::Join("poisoned".into()))?;
        for e in entries {
            w.writer.add_document(self.doc(e))?;
        }
        Ok(())
    }

    /// Commits with `cursor` as the payload and reloads the reader.
    pub fn commit(&self, cursor: i64) -> Result<(), SearchError> {
        let mut w = self
            .writer
            .lock()
            .map_err(|_| SearchError::Join("poisoned".into()))?;
        let mut pc = w.writer.prepare_commit()?;
        pc.set_payload(&cursor.to_string());
        pc.commit()?;
        w.cursor = cursor;
        drop(w);
        self.reader.reload()?;
        Ok(())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(SearchIndex) -> Result<T, SearchError> + Send + 'static,
    ) -> Result<T, SearchError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| SearchError::Join(e.to_string()))?
    }

    /// Drops everything and re-indexes every entry of the database.
    pub async fn rebuild(&self, db: &Db) -> Result<(), SearchError> {
        let _g = self.sync_lock.lock().await;
        let start_seq = db.max_change_seq().await?;
        {
            let mut w = self
                .writer
                .lock()
                .map_err(|_| SearchError::Join("poisoned".into()))?;
            w.writer.delete_all_documents()?;
            w.cursor = 0;
        }
        let mut after = String::new();
        loop {
            let batch = db.entries_after(&after, 5000).await?;
            let Some(last) = batch.last() else { break };
            after = last.id.clone();
            self.blocking(move |me| me.add_new(&batch)).await?;
        }
        self.blocking(move |me| me.commit(start_seq)).await?;
        drop(_g);
        // Writes that raced with the scan are re-applied (idempotently).
        self.sync(db).await
    }

    /// Applies the change log after the cursor. Idempotent; serialised per index.
    pub async fn sync(&self, db: &Db) -> Result<(), SearchError> {
        let _g = self.sync_lock.lock().await;
        loop {
            let cursor = self.cursor();
            let changes = db.changes_since(cursor, 2000).await?;
            let Some(&(last_seq, _)) = changes.last() else {
                return Ok(());
            };
            let mut ids: Vec<String> = changes.into_iter().map(|(_, id)| id).collect();
            ids.sort();
            ids.dedup();
            let mut rows = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(500) {
                rows.extend(db.entries_by_ids_any(chunk).await?);
            }
            self.blocking(move |me| {
                {
                    let w = me
                        .writer
                        .lock()
                        .map_err(|_| SearchError::Join("poisoned".into()))?;
                    for id in &ids {
                        w.writer
                            .delete_term(Term::from_field_text(me.fields.id, id));
                    }
                    for e in &rows {
                        w.writer.add_document(me.doc(e))?;
                    }
                }
                me.commit(last_seq)
            })
            .await?;
        }
    }

    /// BM25-ranked search within one partner. Returns (total hits, [(entry id, score)]).
    pub fn search(
        &self,
        partner_id: i64,
        q: &str,
        filter: &SearchFilter,
        limit: usize,
        offset: usize,
    ) -> Result<(usize, Vec<(String, f32)>), SearchError> {
        let f = &self.fields;
        let term = |field: Field, v: &str| -> (Occur, Box<dyn Query>) {
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(field, v),
                    IndexRecordOption::WithFreqs,
                )),
            )
        };
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![term(f.partner, &partner_id.to_string())];
        if let Some(v) = &filter.kind {
            must.push(term(f.kind, v));
        }
        if let Some(v) = &filter.status {
            must.push(term(f.status, v));
        }
        if let Some(v) = &filter.tag {
            must.push(term(f.tag, v));
        }
        if let Some(v) = &filter.category {
            must.push(term(f.category, v));
        }
        if filter.created_after.is_some() || filter.created_before.is_some() {
            let lo = filter.created_after.unwrap_or(i64::MIN);
            let hi = filter.created_before.unwrap_or(i64::MAX);
            must.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    std::ops::Bound::Included(Term::from_field_i64(f.created, lo)),
                    std::ops::Bound::Excluded(Term::from_field_i64(f.created, hi)),
                )),
            ));
        }
        // Every word must match (AND), BM25 over the combined field.
        let mut tokenizer = self
            .index
            .tokenizers()
            .get("default")
            .ok_or_else(|| SearchError::Join("no default tokenizer".into()))?;
        let mut words: Vec<String> = Vec::new();
        {
            let mut ts = tokenizer.token_stream(q);
            while ts.advance() {
                let t = ts.token().text.clone();
                if !words.contains(&t) && words.len() < 16 {
                    words.push(t);
                }
            }
        }
        for w in &words {
            must.push(term(f.all, w));
        }
        let query = BooleanQuery::new(must);
        let searcher = self.reader.searcher();
        let limit = limit.max(1);
        let top = searcher.search(
            &query,
            &TopDocs::with_limit(limit)
                .and_offset(offset)
                .order_by_score(),
        )?;
        let count = count_up_to(&searcher, &query, COUNT_CAP)?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let col = searcher
                .segment_reader(addr.segment_ord)
                .fast_fields()
                .u64("id_num")?;
            if let Some(n) = col.first(addr.doc_id) {
                out.push((u64_to_id(n), score));
            }
        }
        Ok((count, out))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn id_numbers_roundtrip() {
        for id in ["0_00000000", "0_zzzzzzzz", "0_ab12cd34", "0_00999999"] {
            assert_eq!(super::u64_to_id(super::id_to_u64(id)), id);
        }
    }
}
