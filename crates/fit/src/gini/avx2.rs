//! The bootstrap's pass over a curve written out in AVX2 (through pulp's
//! safe intrinsics): the compiler, left to itself, split the eight lanes
//! into halves and kept the sums in memory. The same operations in the
//! same order as [`super::area`]'s pass for each lane — integer hashing,
//! exact conversions, multiplies and adds never fused — so the same bits
//! (tested against it).

use core::arch::x86_64::{__m128i, __m256d, __m256i};
use pulp::cast;
use pulp::x86::V3;

use super::{Areas, Keys, LANES, Order, POISSON1_FIRST, POISSON1_SIGNED};

/// The area, exposure and claims of one pass over an order without its
/// ties (the caller sets those right), weights from `keys`.
pub(super) fn pass(v3: V3, o: &Order<'_>, keys: &Keys) -> Areas {
    pulp::Simd::vectorize(v3, Pass { v3, o, keys })
}

struct Pass<'a> {
    v3: V3,
    o: &'a Order<'a>,
    keys: &'a Keys,
}

impl pulp::WithSimd for Pass<'_> {
    type Output = Areas;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Areas {
        let Pass { v3, o, keys } = self;
        let (avx, avx2) = (v3.avx, v3.avx2);
        let gamma: __m256i = cast(keys.gamma);
        let offset: __m256i = cast(keys.offset);
        let sign = avx._mm256_set1_epi32(i32::MIN);
        let (m1, m2) = (
            avx._mm256_set1_epi32(0x85EB_CA6Bu32 as i32),
            avx._mm256_set1_epi32(0xC2B2_AE35u32 as i32),
        );
        // s ≥ t as s > t − 1: AVX2 compares only for greater.
        let below: [__m256i; 10] =
            std::array::from_fn(|k| avx._mm256_set1_epi32(POISSON1_SIGNED[k] - 1));
        let first = avx._mm256_set1_epi32(POISSON1_FIRST as i32);
        let half = avx._mm256_set1_pd(0.5);
        let zero = avx._mm256_setzero_pd();
        let (mut area, mut before, mut total) = ([zero; 2], [zero; 2], [zero; 2]);
        for ((&r, &x), &c) in o.row.iter().zip(o.km).zip(o.claims) {
            // fmix32(i·γ + k)
            let mut h = avx2._mm256_add_epi32(
                avx2._mm256_mullo_epi32(avx._mm256_set1_epi32(r as i32), gamma),
                offset,
            );
            h = avx2._mm256_xor_si256(h, avx2._mm256_srli_epi32::<16>(h));
            h = avx2._mm256_mullo_epi32(h, m1);
            h = avx2._mm256_xor_si256(h, avx2._mm256_srli_epi32::<13>(h));
            h = avx2._mm256_mullo_epi32(h, m2);
            h = avx2._mm256_xor_si256(h, avx2._mm256_srli_epi32::<16>(h));
            let s = avx2._mm256_xor_si256(h, sign);
            let mut count = avx._mm256_setzero_si256();
            for t in &below[..POISSON1_FIRST] {
                count = avx2._mm256_sub_epi32(count, avx2._mm256_cmpgt_epi32(s, *t));
            }
            let all = avx2._mm256_cmpeq_epi32(count, first);
            if avx._mm256_movemask_ps(avx._mm256_castsi256_ps(all)) != 0 {
                for t in &below[POISSON1_FIRST..] {
                    count = avx2._mm256_sub_epi32(count, avx2._mm256_cmpgt_epi32(s, *t));
                }
            }
            let halves: [__m128i; 2] = [
                avx._mm256_castsi256_si128(count),
                avx2._mm256_extracti128_si256::<1>(count),
            ];
            let (x, c) = (avx._mm256_set1_pd(x), avx._mm256_set1_pd(c));
            for (k, w) in halves.into_iter().enumerate() {
                let w: __m256d = avx._mm256_cvtepi32_pd(w);
                let (t, u) = (avx._mm256_mul_pd(w, x), avx._mm256_mul_pd(w, c));
                let inner = avx._mm256_add_pd(before[k], avx._mm256_mul_pd(half, t));
                area[k] = avx._mm256_add_pd(area[k], avx._mm256_mul_pd(u, inner));
                before[k] = avx._mm256_add_pd(before[k], t);
                total[k] = avx._mm256_add_pd(total[k], u);
            }
        }
        let lanes = |v: [__m256d; 2]| -> [f64; LANES] { cast(v) };
        Areas {
            area: lanes(area),
            km: lanes(before),
            claims: lanes(total),
        }
    }
}
