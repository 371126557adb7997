/** The package version (no core import: the CLI stays light). */
export { packageVersion as cliVersion } from '../package.js';
