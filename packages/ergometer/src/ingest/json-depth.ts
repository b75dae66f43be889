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
  let inString = false;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const byte = text[i] as number;
    if (inString) {
      // A backslash escapes the next byte, whatever it is (\" and \\ are the ones that matter here).
      if (byte === 0x5c) i++;
      else if (byte === 0x22) inString = false;
    } else if (byte === 0x22) {
      inString = true;
    } else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > maxDepth) return true;
    } else if (byte === 0x5d || byte === 0x7d) {
      depth--;
    }
  }
  return false;
}
