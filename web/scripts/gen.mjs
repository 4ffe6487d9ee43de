// Generates the TypeScript client in src/gen/ from the .proto files in ../proto.
//
// No protoc or buf: the works-proto crate compiles the protos with protox and
// writes the encoded descriptor set; it is handed to protoc-gen-es as the
// CodeGeneratorRequest protoc would have sent.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  CodeGeneratorRequestSchema,
  CodeGeneratorResponseSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";

const web = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(web, "src/gen");
const generate = ["works/client/v1/client.proto"];

function run(cmd, args, options) {
  const result = spawnSync(cmd, args, { stdio: ["pipe", "pipe", "inherit"], ...options });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    console.error(`${cmd} ${args.join(" ")} failed with status ${result.status}`);
    process.exit(1);
  }
  return result.stdout;
}

const scratch = mkdtempSync(join(tmpdir(), "works-gen-"));
const setPath = join(scratch, "client.binpb");
run("cargo", ["run", "-q", "-p", "works-proto", "--example", "descriptor-set-out", "--", setPath], {
  cwd: join(web, ".."),
  stdio: ["ignore", "inherit", "inherit"],
});
const set = fromBinary(FileDescriptorSetSchema, readFileSync(setPath));
rmSync(scratch, { recursive: true, force: true });

const request = create(CodeGeneratorRequestSchema, {
  fileToGenerate: generate,
  parameter: "target=ts",
  protoFile: set.file,
});
const plugin = join(web, "node_modules/.bin/protoc-gen-es");
const response = fromBinary(
  CodeGeneratorResponseSchema,
  run(plugin, [], { input: Buffer.from(toBinary(CodeGeneratorRequestSchema, request)) }),
);
if (response.error) {
  console.error(`protoc-gen-es: ${response.error}`);
  process.exit(1);
}
rmSync(out, { recursive: true, force: true });
for (const file of response.file) {
  const path = join(out, file.name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, file.content);
  console.log(`wrote src/gen/${file.name}`);
}
