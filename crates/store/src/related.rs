//! A record read together with the caller's relationship to its patient:
//! one round trip instead of two for a clinician's read (the relationship
//! decides whether the record may be seen; the policy decides, the store
//! only brings the facts).

use sqlx::Row;

use crate::{CURRENT_MEMBER, Result, Store, VERSION_COLUMNS_V, VersionRow, version_row};

impl Store {
    /// The current version of `resource_type/id` (if there is one) and, for the
    /// patient it belongs to, whether `practitioner_id` is on a current care team
    /// of theirs and whether `user_id` holds a break-glass to them at `now`.
    ///
    /// Always one statement, found or not: for an unknown id the relationship
    /// is looked up with the id in the place of the patient, as
    /// [`Store::relationship`] would be, so an absent record and one outside
    /// the caller's care cost the same.
    pub async fn read_related(
        &self,
        resource_type: &str,
        id: &str,
        practitioner_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<(Option<VersionRow>, (bool, bool))> {
        let q = format!(
            "SELECT {VERSION_COLUMNS_V}, \
               (SELECT COUNT(*) FROM care_team_members c WHERE c.practitioner_id = ? \
                  AND c.patient_id = COALESCE(v.compartment, ?) AND {CURRENT_MEMBER}), \
               (SELECT COUNT(*) FROM break_glass b WHERE b.user_id = ? \
                  AND b.patient_id = COALESCE(v.compartment, ?) AND b.expires_at > ?) \
             FROM (SELECT 1 AS one) x \
             LEFT JOIN resource_heads h ON h.resource_type = ? AND h.id = ? \
             LEFT JOIN resource_versions v \
               ON v.resource_type = h.resource_type AND v.id = h.id AND v.version_id = h.version_id"
        );
        let r = sqlx::query(self.sql(q))
            .bind(practitioner_id)
            .bind(id)
            .bind(now)
            .bind(now)
            .bind(user_id)
            .bind(id)
            .bind(now)
            .bind(resource_type)
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        let found = r.try_get::<Option<String>, _>(1)?.is_some();
        let row = if found { Some(version_row(&r)?) } else { None };
        Ok((row, (r.try_get::<i64, _>(9)? > 0, r.try_get::<i64, _>(10)? > 0)))
    }
}
