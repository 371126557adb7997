/**
 * `latchkey` — the CLI entry. Parses with commander (exitOverride: we return exit codes instead of
 * exiting), calls the client (or, for init/server/key rekey, the core directly), prints.
 * Exit codes: 0 ok, 1 error, 2 usage (bad arguments or a 400), 3 not found, 4 denied.
 */
import { Command, CommanderError } from 'commander';
import { agentCommand } from './agent.js';
import { auditCommand } from './audit.js';
import { caCommand } from './ca.js';
import { grantCommand } from './grant.js';
import { initCommand } from './init.js';
import { keyCommand } from './key.js';
import { memberCommand } from './member.js';
import { describeError, EXIT, printError } from './output.js';
import { proposalCommand } from './proposal.js';
import { runCommand } from './run.js';
import { secretCommand } from './secret.js';
import { serverCommand } from './server.js';
import { serviceCommand } from './service.js';
import { loginCommand, logoutCommand, statusCommand, whoamiCommand } from './status.js';
import { userCommand } from './user.js';
import { vaultCommand } from './vault.js';
import { cliVersion } from './version.js';

const ADDR_HELP = 'server address (default: $LATCHKEY_ADDR, the saved address, or http://127.0.0.1:7470)';

/** Help commander prints for a group run without its verb (to stderr): kept here, reported as one line. */
let helpOnError = '';

/** Builds the command tree. Each action stores its exit code through `setCode`. */
export function buildProgram(setCode: (code: number) => void): Command {
  const program = new Command('latchkey');
  program
    .description('Latchkey: a self-hosted credential vault for AI agents')
    .version(cliVersion(), '-V, --version', 'print the version')
    .option('--addr <url>', ADDR_HELP)
    .helpOption('-h, --help', 'show help')
    .showSuggestionAfterError(true)
    .configureOutput({
      // commander's own error text is reprinted by main() as one `latchkey: …` line
      outputError: () => {},
      // help on stderr only follows a usage error (a group without its verb): main() says it in one line
      writeErr: (text: string) => {
        helpOnError += text;
      },
    })
    // program options are read before the noun only, so a verb's own --version (secret get --version N)
    // is not taken as the program's; --addr is also accepted after the verb (added to every leaf below)
    .enablePositionalOptions()
    .exitOverride();

  initCommand(program, setCode);
  serverCommand(program, setCode);
  statusCommand(program, setCode);
  whoamiCommand(program, setCode);
  loginCommand(program, setCode);
  logoutCommand(program, setCode);
  vaultCommand(program, setCode);
  secretCommand(program, setCode);
  agentCommand(program, setCode);
  grantCommand(program, setCode);
  serviceCommand(program, setCode);
  proposalCommand(program, setCode);
  userCommand(program, setCode);
  memberCommand(program, setCode);
  auditCommand(program, setCode);
  keyCommand(program, setCode);
  runCommand(program, setCode);
  caCommand(program, setCode);

  addAddrToLeaves(program);
  return program;
}

/** `--addr` works before the noun and after the verb alike. */
function addAddrToLeaves(cmd: Command): void {
  for (const sub of cmd.commands) {
    if (sub.commands.length) addAddrToLeaves(sub);
    else if (!sub.options.some((o) => o.long === '--addr')) sub.option('--addr <url>', ADDR_HELP);
  }
}

/** Runs the CLI on process.argv-style arguments and resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  // a reader that went away (`latchkey audit | head -1`) ends a command's output, not in a stack
  // trace. A server keeps serving: its stdout (log, `--audit-file -`) is not what it is for.
  const serving = argv.slice(2).find((a) => !a.startsWith('-')) === 'server';
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    if (!serving) process.exit(process.exitCode ?? 0);
  });
  let code = EXIT.ok as number;
  const program = buildProgram((c) => { code = c; });
  try {
    await program.parseAsync(argv, { from: 'node' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.ok;
      // `help X` exits 0; a group run without its verb printed its help to stderr: a usage error
      if (err.code === 'commander.help') {
        if (err.exitCode === 0) return EXIT.ok;
        const usageLine = /Usage: (latchkey(?: [a-z-]+)*)/.exec(helpOnError)?.[1] ?? 'latchkey';
        helpOnError = '';
        printError(`${usageLine} needs a command; see \`${usageLine} --help\``);
        return EXIT.usage;
      }
      printError(err.message.replace(/^error:\s*/, '').replace(/\s*\n\s*/g, ' ').trim());
      return EXIT.usage;
    }
    const { code: c, message } = describeError(err);
    printError(message);
    return c;
  }
}
