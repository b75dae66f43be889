/** The agent's version, sent in every batch. Kept equal to package.json by test/version.test.ts. */
export const AGENT_VERSION = '0.1.0';
