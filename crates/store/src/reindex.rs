//! Rebuilding a current resource's blind-index tokens in place, without a new
//! version: how records written before an index existed get its tokens (the
//! records service computes them; SQL alone cannot, it has no key).

use crate::{Result, SearchToken, Store, VersionRow};

impl Store {
    /// Replace the search tokens of the current version of `resource_type`/`id`
    /// with `tokens`, if that version is still `version_id`. `false` (nothing
    /// changed) if a newer version was written meanwhile: it came with its own tokens.
    pub async fn replace_search_tokens(
        &self,
        resource_type: &str,
        id: &str,
        version_id: i64,
        tokens: &[SearchToken],
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        // Taking the head row's lock first: a concurrent update waits, or this waits for it.
        let done = sqlx::query(self.sql(
            "UPDATE resource_heads SET version_id = version_id WHERE resource_type = ? AND id = ? AND version_id = ?",
        ))
        .bind(resource_type)
        .bind(id)
        .bind(version_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let row = VersionRow {
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            version_id,
            compartment: String::new(),
            key_version: 0,
            last_updated: 0,
            body: Vec::new(),
            restricted_to: None,
            patient_visible: false,
        };
        self.replace_tokens(&mut tx, &row, tokens).await?;
        tx.commit().await?;
        Ok(true)
    }
}
