//! A counted request, and a batch of them as `record_hits` takes it.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::DbError;
use crate::request_id::RequestId;

/// One counted request, as `record_hits` stores it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub request_id: RequestId,
    pub client_ip: IpAddr,
    pub internal_ip: IpAddr,
}

/// Writes a batch of hits in one transaction; returns how many were new.
pub trait HitWriter: Send {
    fn record_hits(&mut self, hits: &[&Hit]) -> Result<u64, DbError>;

    /// Forgets any connection state, after a call that did not end normally.
    fn reset(&mut self) {}
}

/// The batch as `record_hits` takes it. Ids are 32 hex digits and addresses
/// are IP text, so nothing needs JSON escaping.
pub fn hits_json(hits: &[&Hit]) -> String {
    let mut json = String::with_capacity(2 + hits.len() * 96);
    json.push('[');
    for (i, hit) in hits.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(
            json,
            r#"{{"request_id":"{}","client_ip":"{}","internal_ip":"{}"}}"#,
            hit.request_id, hit.client_ip, hit.internal_ip
        );
    }
    json.push(']');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_a_json_array_of_hits() {
        let hit = Hit {
            request_id: RequestId::parse("6c1f0a3e9b2d4f8a0b1c2d3e4f5a6b7c").unwrap(),
            client_ip: "2001:db8::7".parse().unwrap(),
            internal_ip: "10.0.0.2".parse().unwrap(),
        };
        assert_eq!(hits_json(&[]), "[]");
        assert_eq!(
            hits_json(&[&hit, &hit]),
            r#"[{"request_id":"6c1f0a3e9b2d4f8a0b1c2d3e4f5a6b7c","client_ip":"2001:db8::7","internal_ip":"10.0.0.2"},{"request_id":"6c1f0a3e9b2d4f8a0b1c2d3e4f5a6b7c","client_ip":"2001:db8::7","internal_ip":"10.0.0.2"}]"#
        );
    }
}
