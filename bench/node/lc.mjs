// LangChain.js peer for bench/run.sh.
//   node lc.mjs MODE BASE_URL [N [CONCURRENCY]]
// MODE: cold | seq | conc | chain | plan | batch.  Every call is the same
// one-message prompt as skein's Bench.Echo, against the same server.
import { ChatOpenAI } from "@langchain/openai";
import { ChatPromptTemplate } from "@langchain/core/prompts";
import { StringOutputParser } from "@langchain/core/output_parsers";
import { RunnableParallel, RunnableSequence } from "@langchain/core/runnables";

const [mode, baseURL, nArg, concArg] = process.argv.slice(2);
const n = Number(nArg || 1);
const model = new ChatOpenAI({
  model: "bench", apiKey: process.env.OPENAI_API_KEY, configuration: { baseURL },
  maxRetries: 0, temperature: 0, maxTokens: 16,
});
const step = ChatPromptTemplate.fromTemplate("{input}").pipe(model).pipe(new StringOutputParser());
const t0 = performance.now();
const check = (s) => { if (s !== "ok") throw new Error(`unexpected reply ${JSON.stringify(s)}`); };

if (mode === "cold") {
  console.log(await step.invoke({ input: "hello" }));
} else if (mode === "seq") {
  for (let i = 0; i < n; i++) check(await step.invoke({ input: "hello" }));
  console.log(`calls=${n}`);
} else if (mode === "conc") {
  const out = await Promise.all(Array.from({ length: n }, () => step.invoke({ input: "hello" })));
  out.forEach(check);
  console.log(`calls=${out.length}`);
} else if (mode === "chain") {
  const toInput = (s) => ({ input: s });
  const chain = RunnableSequence.from([step, toInput, step, toInput, step]);
  console.log(await chain.invoke({ input: "hello" }));
} else if (mode === "plan") {
  const branches = {};
  for (let i = 1; i <= 8; i++) branches[`b${i}`] = step;
  const plan = RunnableSequence.from([
    RunnableParallel.from(branches),
    (r) => Object.values(r).join("\n"),
  ]);
  console.log(await plan.invoke({ input: "hello" }));
} else if (mode === "batch") {
  const inputs = Array.from({ length: n }, (_, i) => ({ input: `Name a colour for item ${i + 1}` }));
  const out = await step.batch(inputs, { maxConcurrency: Number(concArg || 64) });
  console.log(`rows=${out.length}`);
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
// from before the first call to the result, start-up and exit excluded
console.error(`inproc_ms=${(performance.now() - t0).toFixed(1)}`);
