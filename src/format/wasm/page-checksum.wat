;; PostgreSQL data page checksum (PostgreSQL's checksum_impl.h: FNV-1a style mixing over 32 lanes), WebAssembly SIMD.
;;
;; The 32 lanes of the algorithm are held in 8 i32x4 accumulators: $s0 = lanes 0–3, …,
;; $s7 = lanes 28–31. A row of the page is 32 little-endian words (128 bytes), so one row is
;; exactly eight v128 loads, one per accumulator; the loop takes two rows per iteration (every
;; PostgreSQL block size, 1–32 kB, is a multiple of 256 bytes). The 8 accumulators are independent,
;; which keeps the multiplier busy while each lane's xor→mul→xor chain completes.
;;
;; Pages are read where they are, in linear memory; pd_checksum (bytes 8–9, the low half of word
;; 2) is masked during the load, never written.
;;
;; Memory layout is the caller's (page-checksum-wasm.ts): pages at some offset, a result area at
;; another. Memory has no maximum, so the caller may grow it.
;;
;; Assembled by scripts/build-wasm.mjs (wabt, feature simd) into dist/wasm/page-checksum.wasm.
(module
  (memory (export "memory") 1)

  ;; All-zero pages found by the last verifyPages call.
  (global $newPages (mut i32) (i32.const 0))

  ;; Checksum (1…65535) of the $pageSize-byte page at $p as block $blkno.
  (func $checksum (export "pageChecksum") (param $p i32) (param $pageSize i32) (param $blkno i32) (result i32)
    (local $end i32)
    (local $prime v128)
    (local $mask v128)
    (local $t v128)
    (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local $s4 v128) (local $s5 v128) (local $s6 v128) (local $s7 v128)

    (local.set $prime (i32x4.splat (i32.const 16777619)))  ;; FNV_PRIME 0x01000193
    ;; Word 2 of row 0 holds pd_checksum in its low 16 bits (little-endian): treat them as zero.
    (local.set $mask (v128.const i32x4 0xFFFFFFFF 0xFFFFFFFF 0xFFFF0000 0xFFFFFFFF))

    ;; checksumBaseOffsets[0…31]: they must be exact.
    (local.set $s0 (v128.const i32x4 0x5B1F36E9 0xB8525960 0x02AB50AA 0x1DE66D2A))  ;; lanes 0–3
    (local.set $s1 (v128.const i32x4 0x79FF467A 0x9BB9F8A3 0x217E7CD2 0x83E13D2C))  ;; lanes 4–7
    (local.set $s2 (v128.const i32x4 0xF8D4474F 0xE39EB970 0x42C6AE16 0x993216FA))  ;; lanes 8–11
    (local.set $s3 (v128.const i32x4 0x7B093B5D 0x98DAFF3C 0xF718902A 0x0B1C9CDB))  ;; lanes 12–15
    (local.set $s4 (v128.const i32x4 0xE58F764B 0x187636BC 0x5D7B3BB1 0xE73DE7DE))  ;; lanes 16–19
    (local.set $s5 (v128.const i32x4 0x92BEC979 0xCCA6C0B2 0x304A0979 0x85AA43D4))  ;; lanes 20–23
    (local.set $s6 (v128.const i32x4 0x783125BB 0x6CA8EAA2 0xE407EAC6 0x4B5CFC3E))  ;; lanes 24–27
    (local.set $s7 (v128.const i32x4 0x9FBF8C76 0x15CA20BE 0xF2CA9FD3 0x959BD756))  ;; lanes 28–31

    (local.set $end (i32.add (local.get $p) (local.get $pageSize)))
    ;; mix(s, v): t = s ^ v; s = t * FNV_PRIME ^ (t >>> 17), in every lane.
    (loop $rows
      ;; Row r (words 32r … 32r+31). $mask clears pd_checksum in row 0 and is all ones afterwards.
      (local.set $t (v128.xor (local.get $s0) (v128.and (v128.load (local.get $p)) (local.get $mask))))
      (local.set $s0 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s1) (v128.load offset=16 (local.get $p))))
      (local.set $s1 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s2) (v128.load offset=32 (local.get $p))))
      (local.set $s2 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s3) (v128.load offset=48 (local.get $p))))
      (local.set $s3 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s4) (v128.load offset=64 (local.get $p))))
      (local.set $s4 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s5) (v128.load offset=80 (local.get $p))))
      (local.set $s5 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s6) (v128.load offset=96 (local.get $p))))
      (local.set $s6 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s7) (v128.load offset=112 (local.get $p))))
      (local.set $s7 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      ;; Row r + 1.
      (local.set $t (v128.xor (local.get $s0) (v128.load offset=128 (local.get $p))))
      (local.set $s0 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s1) (v128.load offset=144 (local.get $p))))
      (local.set $s1 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s2) (v128.load offset=160 (local.get $p))))
      (local.set $s2 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s3) (v128.load offset=176 (local.get $p))))
      (local.set $s3 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s4) (v128.load offset=192 (local.get $p))))
      (local.set $s4 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s5) (v128.load offset=208 (local.get $p))))
      (local.set $s5 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s6) (v128.load offset=224 (local.get $p))))
      (local.set $s6 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))
      (local.set $t (v128.xor (local.get $s7) (v128.load offset=240 (local.get $p))))
      (local.set $s7 (v128.xor (i32x4.mul (local.get $t) (local.get $prime)) (i32x4.shr_u (local.get $t) (i32.const 17))))

      (local.set $mask (v128.const i32x4 -1 -1 -1 -1))
      (local.set $p (i32.add (local.get $p) (i32.const 256)))
      (br_if $rows (i32.lt_u (local.get $p) (local.get $end)))
    )

    ;; Two finishing rounds mixing in 0 (t = s).
    (local.set $s0 (v128.xor (i32x4.mul (local.get $s0) (local.get $prime)) (i32x4.shr_u (local.get $s0) (i32.const 17))))
    (local.set $s1 (v128.xor (i32x4.mul (local.get $s1) (local.get $prime)) (i32x4.shr_u (local.get $s1) (i32.const 17))))
    (local.set $s2 (v128.xor (i32x4.mul (local.get $s2) (local.get $prime)) (i32x4.shr_u (local.get $s2) (i32.const 17))))
    (local.set $s3 (v128.xor (i32x4.mul (local.get $s3) (local.get $prime)) (i32x4.shr_u (local.get $s3) (i32.const 17))))
    (local.set $s4 (v128.xor (i32x4.mul (local.get $s4) (local.get $prime)) (i32x4.shr_u (local.get $s4) (i32.const 17))))
    (local.set $s5 (v128.xor (i32x4.mul (local.get $s5) (local.get $prime)) (i32x4.shr_u (local.get $s5) (i32.const 17))))
    (local.set $s6 (v128.xor (i32x4.mul (local.get $s6) (local.get $prime)) (i32x4.shr_u (local.get $s6) (i32.const 17))))
    (local.set $s7 (v128.xor (i32x4.mul (local.get $s7) (local.get $prime)) (i32x4.shr_u (local.get $s7) (i32.const 17))))
    (local.set $s0 (v128.xor (i32x4.mul (local.get $s0) (local.get $prime)) (i32x4.shr_u (local.get $s0) (i32.const 17))))
    (local.set $s1 (v128.xor (i32x4.mul (local.get $s1) (local.get $prime)) (i32x4.shr_u (local.get $s1) (i32.const 17))))
    (local.set $s2 (v128.xor (i32x4.mul (local.get $s2) (local.get $prime)) (i32x4.shr_u (local.get $s2) (i32.const 17))))
    (local.set $s3 (v128.xor (i32x4.mul (local.get $s3) (local.get $prime)) (i32x4.shr_u (local.get $s3) (i32.const 17))))
    (local.set $s4 (v128.xor (i32x4.mul (local.get $s4) (local.get $prime)) (i32x4.shr_u (local.get $s4) (i32.const 17))))
    (local.set $s5 (v128.xor (i32x4.mul (local.get $s5) (local.get $prime)) (i32x4.shr_u (local.get $s5) (i32.const 17))))
    (local.set $s6 (v128.xor (i32x4.mul (local.get $s6) (local.get $prime)) (i32x4.shr_u (local.get $s6) (i32.const 17))))
    (local.set $s7 (v128.xor (i32x4.mul (local.get $s7) (local.get $prime)) (i32x4.shr_u (local.get $s7) (i32.const 17))))

    ;; XOR the 32 lanes together, XOR the block number, fold to 1…65535.
    (local.set $t
      (v128.xor
        (v128.xor (v128.xor (local.get $s0) (local.get $s1)) (v128.xor (local.get $s2) (local.get $s3)))
        (v128.xor (v128.xor (local.get $s4) (local.get $s5)) (v128.xor (local.get $s6) (local.get $s7)))))
    (i32.add
      (i32.rem_u
        (i32.xor
          (local.get $blkno)
          (i32.xor
            (i32.xor (i32x4.extract_lane 0 (local.get $t)) (i32x4.extract_lane 1 (local.get $t)))
            (i32.xor (i32x4.extract_lane 2 (local.get $t)) (i32x4.extract_lane 3 (local.get $t)))))
        (i32.const 65535))
      (i32.const 1))
  )

  ;; 1 when all $pageSize bytes at $p are zero, else 0.
  (func $isAllZero (param $p i32) (param $pageSize i32) (result i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $p) (local.get $pageSize)))
    (loop $chunks
      (if (v128.any_true
            (v128.or
              (v128.or (v128.load (local.get $p)) (v128.load offset=16 (local.get $p)))
              (v128.or (v128.load offset=32 (local.get $p)) (v128.load offset=48 (local.get $p)))))
        (then (return (i32.const 0))))
      (local.set $p (i32.add (local.get $p) (i32.const 64)))
      (br_if $chunks (i32.lt_u (local.get $p) (local.get $end)))
    )
    (i32.const 1)
  )

  ;; Verifies $pageCount pages of $pageSize bytes from $p; page i is block $firstBlkno + i.
  ;; All-zero pages are new and skipped (the only pages without a checksum); every other
  ;; page is checked, whatever its pd_upper. For each failure, writes 8 bytes at $out:
  ;; u32 page index, u16 computed checksum, u16 stored checksum. Returns the number of failures;
  ;; the number of new pages is then given by newPages().
  (func (export "verifyPages")
        (param $p i32) (param $pageCount i32) (param $firstBlkno i32) (param $pageSize i32) (param $out i32)
        (result i32)
    (local $i i32)
    (local $failures i32)
    (local $new i32)
    (local $stored i32)
    (local $computed i32)
    (block $done
      (loop $pages
        (br_if $done (i32.ge_u (local.get $i) (local.get $pageCount)))
        (local.set $stored (i32.load16_u offset=8 (local.get $p)))
        (block $next
          ;; A computed checksum is never 0: only a page storing 0 can be all zero.
          (if (i32.eqz (local.get $stored))
            (then
              (if (call $isAllZero (local.get $p) (local.get $pageSize))
                (then
                  (local.set $new (i32.add (local.get $new) (i32.const 1)))
                  (br $next)))))
          (local.set $computed
            (call $checksum (local.get $p) (local.get $pageSize) (i32.add (local.get $firstBlkno) (local.get $i))))
          (if (i32.ne (local.get $computed) (local.get $stored))
            (then
              (i32.store (local.get $out) (local.get $i))
              (i32.store16 offset=4 (local.get $out) (local.get $computed))
              (i32.store16 offset=6 (local.get $out) (local.get $stored))
              (local.set $out (i32.add (local.get $out) (i32.const 8)))
              (local.set $failures (i32.add (local.get $failures) (i32.const 1))))))
        (local.set $p (i32.add (local.get $p) (local.get $pageSize)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $pages)))
    (global.set $newPages (local.get $new))
    (local.get $failures)
  )

  ;; Writes the checksum of each of $pageCount pages from $p as a u16 at $out + 2i (all-zero pages
  ;; included).
  (func (export "checksumPages")
        (param $p i32) (param $pageCount i32) (param $firstBlkno i32) (param $pageSize i32) (param $out i32)
    (local $i i32)
    (block $done
      (loop $pages
        (br_if $done (i32.ge_u (local.get $i) (local.get $pageCount)))
        (i32.store16
          (local.get $out)
          (call $checksum (local.get $p) (local.get $pageSize) (i32.add (local.get $firstBlkno) (local.get $i))))
        (local.set $p (i32.add (local.get $p) (local.get $pageSize)))
        (local.set $out (i32.add (local.get $out) (i32.const 2)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $pages)))
  )

  (func (export "newPages") (result i32)
    (global.get $newPages)
  )
)
