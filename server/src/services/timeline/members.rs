//! Users by number, for the feeds kept in memory ([`super::memory`]): a feed holds each
//! author and followee as a 4-byte [`Member`] instead of a 16-byte id, which makes an
//! entry 20 bytes instead of 32 (docs/benchmarks.md, "Memory").

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use uuid::Uuid;

/// A user, numbered the first time a feed meets them (as author, followee or owner).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Member(u32);

/// The numbering of users. A number is never taken back: it costs about 40 bytes for
/// each user ever seen, for as long as the process runs (4 MiB for 100,000 users),
/// which is what lets every entry of every feed be 12 bytes smaller.
#[derive(Debug, Default)]
pub(super) struct Members {
    numbers: HashMap<Uuid, Member>,
    ids: Vec<Uuid>,
}

impl Members {
    pub(super) fn id(&self, member: Member) -> Uuid {
        // Every number was handed out by `number`, as an index into `ids`.
        self.ids[member.0 as usize]
    }
}

/// [`Members`] shared by every feed: read-locked to look a user up, write-locked only to
/// number a user seen for the first time. Lock order: a feed's lock may be held while
/// reading the numbering, never while numbering (users are numbered before a feed is
/// locked).
#[derive(Debug, Default)]
pub(super) struct Numbering(RwLock<Members>);

impl Numbering {
    pub(super) fn read(&self) -> RwLockReadGuard<'_, Members> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// `id`'s number, if it has one.
    pub(super) fn known(&self, id: Uuid) -> Option<Member> {
        self.read().numbers.get(&id).copied()
    }

    /// `id`'s number, given now if it has none.
    pub(super) fn number(&self, id: Uuid) -> Member {
        if let Some(member) = self.known(id) {
            return member;
        }
        let mut members = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let next = members.ids.len();
        let Members { numbers, ids } = &mut *members;
        *numbers.entry(id).or_insert_with(|| {
            ids.push(id);
            // Four billion distinct users would need 64 GiB for their ids alone here;
            // memory runs out long before the numbers do.
            Member(u32::try_from(next).expect("fewer than 2^32 users in one process"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Numbering;
    use uuid::Uuid;

    #[test]
    fn a_user_keeps_one_number_which_leads_back_to_them() {
        let numbering = Numbering::default();
        let (alice, bob) = (Uuid::from_u128(7), Uuid::from_u128(9));
        assert_eq!(numbering.known(alice), None);
        let a = numbering.number(alice);
        let b = numbering.number(bob);
        assert_ne!(a, b);
        assert_eq!(numbering.number(alice), a);
        assert_eq!(numbering.known(bob), Some(b));
        let members = numbering.read();
        assert_eq!((members.id(a), members.id(b)), (alice, bob));
    }
}
