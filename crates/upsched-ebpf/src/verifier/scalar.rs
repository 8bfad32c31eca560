//! The value domain of the verifier: a 64-bit value known to lie in an unsigned interval and
//! in a signed interval at once (the kernel verifier's `umin/umax/smin/smax`, without tnums).
//! Each operation over-approximates the set of results the interpreter can produce; both
//! intervals are kept consistent with each other by [`Scalar::normalized`].

use crate::insn::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scalar {
    pub umin: u64,
    pub umax: u64,
    pub smin: i64,
    pub smax: i64,
}

/// The values of the low `bits` bits: `[0, 2^bits - 1]`.
fn width_range(bits: u32) -> Scalar {
    if bits >= 64 {
        Scalar::UNKNOWN
    } else {
        Scalar::unsigned(0, (1u64 << bits) - 1)
    }
}

/// Smallest all-ones value at least `x`: a bound for OR and XOR results.
fn fill_ones(x: u64) -> u64 {
    if x == 0 {
        0
    } else {
        u64::MAX >> x.leading_zeros()
    }
}

impl Scalar {
    pub const UNKNOWN: Scalar = Scalar {
        umin: 0,
        umax: u64::MAX,
        smin: i64::MIN,
        smax: i64::MAX,
    };

    pub fn constant(value: u64) -> Scalar {
        Scalar {
            umin: value,
            umax: value,
            smin: value as i64,
            smax: value as i64,
        }
    }

    /// `[lo, hi]` unsigned (`lo <= hi`).
    pub fn unsigned(lo: u64, hi: u64) -> Scalar {
        Scalar {
            umin: lo,
            umax: hi,
            ..Scalar::UNKNOWN
        }
        .normalized()
        .unwrap_or(Scalar::UNKNOWN)
    }

    /// `[lo, hi]` signed (`lo <= hi`).
    pub fn signed(lo: i64, hi: i64) -> Scalar {
        Scalar {
            smin: lo,
            smax: hi,
            ..Scalar::UNKNOWN
        }
        .normalized()
        .unwrap_or(Scalar::UNKNOWN)
    }

    /// The 32-bit unknown: `[0, u32::MAX]`.
    pub fn unknown32() -> Scalar {
        width_range(32)
    }

    pub fn as_constant(&self) -> Option<u64> {
        (self.umin == self.umax).then_some(self.umin)
    }

    /// Tightens each interval with what the other implies; `None` when the set is empty.
    pub fn normalized(mut self) -> Option<Scalar> {
        for _ in 0..2 {
            if self.umin > self.umax || self.smin > self.smax {
                return None;
            }
            // An unsigned interval on one side of 2^63 is also a signed interval.
            if (self.umin as i64) <= (self.umax as i64) {
                self.smin = self.smin.max(self.umin as i64);
                self.smax = self.smax.min(self.umax as i64);
            }
            // A signed interval on one side of 0 is also an unsigned interval.
            if (self.smin as u64) <= (self.smax as u64) {
                self.umin = self.umin.max(self.smin as u64);
                self.umax = self.umax.min(self.smax as u64);
            }
        }
        (self.umin <= self.umax && self.smin <= self.smax).then_some(self)
    }

    /// Whether every value of `other` is a value of `self`.
    pub fn contains(&self, other: &Scalar) -> bool {
        self.umin <= other.umin
            && other.umax <= self.umax
            && self.smin <= other.smin
            && other.smax <= self.smax
    }

    pub fn intersect(&self, other: &Scalar) -> Option<Scalar> {
        Scalar {
            umin: self.umin.max(other.umin),
            umax: self.umax.min(other.umax),
            smin: self.smin.max(other.smin),
            smax: self.smax.min(other.smax),
        }
        .normalized()
    }

    /// Whether all values fit in 32 bits unsigned (so the 32-bit view equals the value).
    pub fn fits_u32(&self) -> bool {
        self.umax <= u64::from(u32::MAX)
    }

    /// The values of the low 32 bits, zero-extended.
    pub fn low32(&self) -> Scalar {
        if self.fits_u32() {
            *self
        } else {
            Scalar::unknown32()
        }
    }

    /// Values of a `bytes`-byte load: zero-extended, or sign-extended for MEMSX.
    pub fn loaded(bytes: usize, sign_extend: bool) -> Scalar {
        let bits = bytes as u32 * 8;
        if bits >= 64 {
            Scalar::UNKNOWN
        } else if sign_extend {
            let half = 1i64 << (bits - 1);
            Scalar::signed(-half, half - 1)
        } else {
            width_range(bits)
        }
    }

    /// Result of a byte-order instruction (`le`/`be` of class ALU, `bswap` of ALU64) on the
    /// full register: `le` truncates, which keeps a value that already fits; a swap yields
    /// anything of its width.
    pub fn byte_order(&self, insn: &Insn) -> Scalar {
        let bits = insn.imm.clamp(0, 64) as u32;
        let truncates = insn.class() == BPF_ALU && insn.source() == BPF_TO_LE;
        if truncates && (bits >= 64 || self.umax >> bits == 0) {
            *self
        } else {
            width_range(bits)
        }
    }

    fn join_both(unsigned: Option<(u64, u64)>, signed: Option<(i64, i64)>) -> Scalar {
        let mut result = Scalar::UNKNOWN;
        if let Some((lo, hi)) = unsigned {
            result.umin = lo;
            result.umax = hi;
        }
        if let Some((lo, hi)) = signed {
            result.smin = lo;
            result.smax = hi;
        }
        result.normalized().unwrap_or(Scalar::UNKNOWN)
    }

    pub fn add(&self, other: &Scalar) -> Scalar {
        let unsigned = match (
            self.umin.checked_add(other.umin),
            self.umax.checked_add(other.umax),
        ) {
            (Some(lo), Some(hi)) => Some((lo, hi)),
            _ => None,
        };
        let signed = match (
            self.smin.checked_add(other.smin),
            self.smax.checked_add(other.smax),
        ) {
            (Some(lo), Some(hi)) => Some((lo, hi)),
            _ => None,
        };
        Scalar::join_both(unsigned, signed)
    }

    pub fn sub(&self, other: &Scalar) -> Scalar {
        let unsigned =
            (self.umin >= other.umax).then(|| (self.umin - other.umax, self.umax - other.umin));
        let signed = match (
            self.smin.checked_sub(other.smax),
            self.smax.checked_sub(other.smin),
        ) {
            (Some(lo), Some(hi)) => Some((lo, hi)),
            _ => None,
        };
        Scalar::join_both(unsigned, signed)
    }

    fn mul(&self, other: &Scalar) -> Scalar {
        match self.umax.checked_mul(other.umax) {
            Some(hi) => Scalar::unsigned(self.umin * other.umin, hi),
            None => Scalar::UNKNOWN,
        }
    }

    fn div_unsigned(&self, divisor: &Scalar) -> Scalar {
        match self.umax.checked_div(divisor.umin) {
            // divisor.umax >= divisor.umin > 0
            Some(hi) => Scalar::unsigned(self.umin / divisor.umax, hi),
            // Division by zero gives 0; any other quotient is at most the dividend.
            None => Scalar::unsigned(0, self.umax),
        }
    }

    fn mod_unsigned(&self, divisor: &Scalar) -> Scalar {
        if divisor.umin > 0 {
            Scalar::unsigned(0, self.umax.min(divisor.umax - 1))
        } else {
            // Modulo by zero leaves the dividend.
            Scalar::unsigned(0, self.umax)
        }
    }

    fn shift_left(&self, amount: u64) -> Scalar {
        if self.umax.leading_zeros() as u64 >= amount {
            Scalar::unsigned(self.umin << amount, self.umax << amount)
        } else {
            Scalar::UNKNOWN
        }
    }

    /// Result of ALU64 operation `insn` on `self` with source operand `src` (the register's
    /// abstract value, or the sign-extended immediate for K forms).
    pub fn alu64(&self, insn: &Insn, src: &Scalar) -> Scalar {
        let signed = insn.off == 1;
        match insn.op() {
            BPF_ADD => self.add(src),
            BPF_SUB => self.sub(src),
            BPF_MUL => self.mul(src),
            BPF_DIV if !signed => self.div_unsigned(src),
            BPF_MOD if !signed => self.mod_unsigned(src),
            BPF_AND => Scalar::unsigned(0, self.umax.min(src.umax)),
            BPF_OR => Scalar::unsigned(self.umin.max(src.umin), fill_ones(self.umax.max(src.umax))),
            BPF_XOR => Scalar::unsigned(0, fill_ones(self.umax.max(src.umax))),
            BPF_LSH => match src.as_constant() {
                Some(amount) => self.shift_left(amount & 63),
                None => Scalar::UNKNOWN,
            },
            BPF_RSH => match src.as_constant() {
                Some(amount) => {
                    Scalar::unsigned(self.umin >> (amount & 63), self.umax >> (amount & 63))
                }
                None => Scalar::unsigned(0, self.umax),
            },
            BPF_ARSH => match src.as_constant() {
                Some(amount) => {
                    Scalar::signed(self.smin >> (amount & 63), self.smax >> (amount & 63))
                }
                None => Scalar::signed(self.smin.min(0), self.smax.max(0)),
            },
            BPF_NEG => match (self.smax.checked_neg(), self.smin.checked_neg()) {
                (Some(lo), Some(hi)) => Scalar::signed(lo, hi),
                _ => Scalar::UNKNOWN,
            },
            BPF_MOV => match insn.off {
                8 | 16 | 32 => {
                    let half = 1u64 << (insn.off - 1);
                    if src.umax < half {
                        *src
                    } else {
                        Scalar::loaded(insn.off as usize / 8, true)
                    }
                }
                _ => *src,
            },
            // Signed division and modulo; byte swaps are handled on the full register by the
            // caller.
            _ => Scalar::UNKNOWN,
        }
    }

    /// Result of ALU32 operation `insn`; `self` and `src` are already the 32-bit views
    /// ([`Scalar::low32`]), and the result is zero-extended.
    pub fn alu32(&self, insn: &Insn, src: &Scalar) -> Scalar {
        let signed = insn.off == 1;
        let result = match insn.op() {
            BPF_ADD | BPF_SUB | BPF_MUL | BPF_AND | BPF_OR | BPF_XOR => self.alu64(insn, src),
            BPF_DIV | BPF_MOD if !signed => self.alu64(insn, src),
            BPF_LSH => match src.as_constant() {
                Some(amount) => self.shift_left(amount & 31),
                None => Scalar::UNKNOWN,
            },
            BPF_RSH => match src.as_constant() {
                Some(amount) => {
                    Scalar::unsigned(self.umin >> (amount & 31), self.umax >> (amount & 31))
                }
                None => Scalar::unsigned(0, self.umax),
            },
            // Non-negative as i32: an arithmetic shift is a logical one.
            BPF_ARSH if self.umax <= i32::MAX as u64 => match src.as_constant() {
                Some(amount) => {
                    Scalar::unsigned(self.umin >> (amount & 31), self.umax >> (amount & 31))
                }
                None => Scalar::unsigned(0, self.umax),
            },
            BPF_MOV => match insn.off {
                8 | 16 => {
                    if src.umax < 1u64 << (insn.off - 1) {
                        *src
                    } else {
                        Scalar::UNKNOWN
                    }
                }
                _ => *src,
            },
            _ => Scalar::UNKNOWN,
        };
        result.low32()
    }
}

/// The relation a conditional jump asserts between its operands on one of its edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    Eq,
    Ne,
    Ugt,
    Uge,
    Ult,
    Ule,
    Sgt,
    Sge,
    Slt,
    Sle,
    /// `dst & src != 0`
    Set,
    /// `dst & src == 0`
    Clear,
}

impl Relation {
    /// The relation of jump operation `op` when the jump is taken (`taken`) or falls through.
    pub fn of(op: u8, taken: bool) -> Option<Relation> {
        use Relation::*;
        let (yes, no) = match op {
            BPF_JEQ => (Eq, Ne),
            BPF_JNE => (Ne, Eq),
            BPF_JGT => (Ugt, Ule),
            BPF_JGE => (Uge, Ult),
            BPF_JLT => (Ult, Uge),
            BPF_JLE => (Ule, Ugt),
            BPF_JSGT => (Sgt, Sle),
            BPF_JSGE => (Sge, Slt),
            BPF_JSLT => (Slt, Sge),
            BPF_JSLE => (Sle, Sgt),
            BPF_JSET => (Set, Clear),
            _ => return None,
        };
        Some(if taken { yes } else { no })
    }
}

/// Narrows `d` and `s` to the values for which `d <relation> s` can hold; `None` when it
/// cannot hold for any of them (the edge is infeasible).
pub fn refine(relation: Relation, d: Scalar, s: Scalar) -> Option<(Scalar, Scalar)> {
    use Relation::*;
    let (mut d, mut s) = (d, s);
    match relation {
        Eq => {
            let both = d.intersect(&s)?;
            return Some((both, both));
        }
        Ne => {
            if let (Some(a), Some(b)) = (d.as_constant(), s.as_constant()) {
                return (a != b).then_some((d, s));
            }
            if let Some(c) = s.as_constant() {
                d = exclude_end(d, c)?;
            } else if let Some(c) = d.as_constant() {
                s = exclude_end(s, c)?;
            }
        }
        Ult => {
            d.umax = d.umax.min(s.umax.checked_sub(1)?);
            s.umin = s.umin.max(d.umin.checked_add(1)?);
        }
        Ule => {
            d.umax = d.umax.min(s.umax);
            s.umin = s.umin.max(d.umin);
        }
        Ugt => return refine(Ult, s, d).map(|(s, d)| (d, s)),
        Uge => return refine(Ule, s, d).map(|(s, d)| (d, s)),
        Slt => {
            d.smax = d.smax.min(s.smax.checked_sub(1)?);
            s.smin = s.smin.max(d.smin.checked_add(1)?);
        }
        Sle => {
            d.smax = d.smax.min(s.smax);
            s.smin = s.smin.max(d.smin);
        }
        Sgt => return refine(Slt, s, d).map(|(s, d)| (d, s)),
        Sge => return refine(Sle, s, d).map(|(s, d)| (d, s)),
        Set => {
            if let (Some(a), Some(b)) = (d.as_constant(), s.as_constant()) {
                return (a & b != 0).then_some((d, s));
            }
            if d.umax == 0 || s.umax == 0 {
                return None;
            }
            // Some bit is set in both: neither is zero.
            d.umin = d.umin.max(1);
            s.umin = s.umin.max(1);
        }
        Clear => {
            if let (Some(a), Some(b)) = (d.as_constant(), s.as_constant()) {
                return (a & b == 0).then_some((d, s));
            }
        }
    }
    Some((d.normalized()?, s.normalized()?))
}

/// `range` without the value `c` where `c` is one of its ends (an interval cannot have holes).
fn exclude_end(mut range: Scalar, c: u64) -> Option<Scalar> {
    if range.umin == c {
        range.umin = range.umin.checked_add(1)?;
    } else if range.umax == c {
        range.umax = range.umax.checked_sub(1)?;
    }
    if range.smin == c as i64 {
        range.smin = range.smin.checked_add(1)?;
    } else if range.smax == c as i64 {
        range.smax = range.smax.checked_sub(1)?;
    }
    range.normalized()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_scalar() -> impl Strategy<Value = (Scalar, u64)> {
        // A range and a member of it.
        (any::<u64>(), any::<u64>(), any::<u64>(), 0u8..4).prop_map(|(a, b, pick, shape)| {
            let (a, b) = match shape {
                0 => (a % 64, b % 64),
                1 => (a & 0xffff_ffff, b & 0xffff_ffff),
                2 => (a, a),
                _ => (a, b),
            };
            let (lo, hi) = (a.min(b), a.max(b));
            let range = Scalar::unsigned(lo, hi);
            let member = lo + pick % (hi - lo).saturating_add(1).max(1);
            let member = if hi - lo == u64::MAX { pick } else { member };
            (range, member)
        })
    }

    fn contains_value(s: &Scalar, v: u64) -> bool {
        s.umin <= v && v <= s.umax && s.smin <= v as i64 && v as i64 <= s.smax
    }

    proptest! {
        /// Every abstract ALU operation contains the concrete result (soundness).
        #[test]
        fn alu_is_sound(
            (a, x) in arb_scalar(),
            (b, y) in arb_scalar(),
            op in prop::sample::select(vec![
                BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH,
                BPF_NEG, BPF_MOD, BPF_XOR, BPF_MOV, BPF_ARSH,
            ]),
            wide in any::<bool>(),
            off in prop::sample::select(vec![0i16, 1, 8, 16, 32]),
        ) {
            let class = if wide { BPF_ALU64 } else { BPF_ALU };
            let valid_off = match op {
                BPF_DIV | BPF_MOD => off <= 1,
                BPF_MOV => off != 1 && (wide || off != 32),
                _ => off == 0,
            };
            prop_assume!(valid_off);
            let insn = Insn::new(class | op | BPF_X, 0, 1, off, 0);
            let concrete = crate::interp::eval_alu(&insn, x, y);
            let abstract_result = if wide {
                a.alu64(&insn, &b)
            } else {
                a.low32().alu32(&insn, &b.low32())
            };
            prop_assert!(contains_value(&abstract_result, concrete),
                "{insn}: {a:?} op {b:?} = {abstract_result:?} misses {concrete:#x} ({x:#x}, {y:#x})");
        }

        /// Refinement never drops a pair of values for which the relation holds.
        #[test]
        fn refinement_is_sound(
            (a, x) in arb_scalar(),
            (b, y) in arb_scalar(),
            op in prop::sample::select(vec![
                BPF_JEQ, BPF_JNE, BPF_JGT, BPF_JGE, BPF_JLT, BPF_JLE, BPF_JSGT, BPF_JSGE,
                BPF_JSLT, BPF_JSLE, BPF_JSET,
            ]),
        ) {
            let insn = Insn::new(BPF_JMP | op | BPF_X, 0, 1, 0, 0);
            let taken = crate::interp::eval_condition(&insn, x, y);
            let relation = Relation::of(op, taken).unwrap();
            let refined = refine(relation, a, b);
            prop_assert!(refined.is_some(), "{relation:?} {a:?} {b:?} for {x:#x} {y:#x}");
            let (ra, rb) = refined.unwrap();
            prop_assert!(contains_value(&ra, x) && contains_value(&rb, y),
                "{relation:?}: {ra:?} {rb:?} for {x:#x} {y:#x}");
        }
    }

    #[test]
    fn masks_and_shifts_bound_an_index() {
        let slot = Scalar::loaded(4, false);
        let and = Insn::new(BPF_ALU | BPF_AND | BPF_K, 1, 0, 0, 0xfff);
        let masked = slot.alu32(&and, &Scalar::constant(0xfff));
        assert_eq!((masked.umin, masked.umax), (0, 0xfff));
        let shl = Insn::new(BPF_ALU64 | BPF_LSH | BPF_K, 1, 0, 0, 3);
        let offset = masked.alu64(&shl, &Scalar::constant(3));
        assert_eq!((offset.umin, offset.umax), (0, 0x7ff8));
    }
}
