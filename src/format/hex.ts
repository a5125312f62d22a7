/**
 * Numbers in hexadecimal as pgbacula prints them. PostgreSQL writes WAL file names, timelines,
 * magics and checksums upper-case; lz4 frame fields are printed lower-case as the lz4 tools do.
 */
export type HexCase = 'upper' | 'lower';

/** `n` zero-padded to `width` digits: `hexDigits(0x19, 8)` → `00000019`. */
export function hexDigits(n: number | bigint, width: number, letters: HexCase = 'upper'): string {
  const digits = n.toString(16);
  return (letters === 'upper' ? digits.toUpperCase() : digits).padStart(width, '0');
}

/** The same with a `0x` prefix, for messages: `hexLiteral(0xd116, 4)` → `0xD116`. */
export function hexLiteral(n: number | bigint, width: number, letters: HexCase = 'upper'): string {
  return `0x${hexDigits(n, width, letters)}`;
}
