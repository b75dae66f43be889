/**
 * Bearer-token checks. Tokens are kept only as SHA-256 digests, and a presented token is hashed
 * and compared with every known digest by crypto.timingSafeEqual: the comparison takes the same
 * time whatever the token's length or how many leading bytes match, and no early exit tells which
 * of several tokens came close.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export class TokenSet {
  private readonly digests: Buffer[];

  /** @param tokens accepted tokens; empty strings are ignored. */
  constructor(tokens: readonly string[]) {
    this.digests = tokens.filter((token) => token.length > 0).map(digest);
    if (this.digests.length === 0) {
      throw Object.assign(new Error('a token set needs at least one non-empty token'), {
        code: 'ERGOMETER_BAD_OPTION',
      });
    }
  }

  /** Whether the `Authorization` header value carries one of the tokens (`Bearer <token>`). */
  allows(authorization: string | undefined): boolean {
    if (authorization === undefined) return false;
    const match = /^Bearer +(\S+) *$/i.exec(authorization);
    if (match === null) return false;
    const presented = digest(match[1] as string);
    let found = false;
    // No early exit: every digest is compared.
    for (const known of this.digests) found = timingSafeEqual(presented, known) || found;
    return found;
  }
}
