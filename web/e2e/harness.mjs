// Shared by the browser scripts the Go tests run (web/e2e_test.go,
// runScript): the Go side's steps over stdin/stdout, checks, and the
// browser.
//
// A step that needs the Go side prints one line
//   go <command> <JSON array of arguments>
// on stdout and waits for "ok" (or "fail <why>") on stdin.
import {chromium} from "playwright-core";
import {createInterface} from "node:readline";

const replies = [];
let wake = null;
createInterface({input: process.stdin}).on("line", (line) => {
  replies.push(line);
  if (wake) wake();
});

// goSide asks the Go test to run cmd and waits for its answer.
export async function goSide(cmd, ...args) {
  console.log(`go ${cmd} ${JSON.stringify(args)}`);
  while (!replies.length) await new Promise((r) => (wake = r));
  const reply = replies.shift();
  if (reply !== "ok") throw new Error(`go ${cmd}: ${reply}`);
}

export function check(ok, what) {
  if (!ok) throw new Error(what);
}

// step logs what the script does next (the Go test logs it).
export function step(what) {
  console.log(`# ${what}`);
}

// launch starts headless Chromium. WebGL without a GPU is rendered by
// SwiftShader (software, on the CPU): Chromium here falls back to it by
// itself with --disable-gpu; --use-angle=swiftshader picks it explicitly
// and --enable-unsafe-swiftshader keeps it allowed where Chromium no longer
// falls back to software WebGL automatically.
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
  });
}
