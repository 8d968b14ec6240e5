#!/usr/bin/env node
// Starts @vercel/cosmosdb-server (pinned in package-lock.json) with two fixes
// that make it answer as the real Cosmos DB service documents, so that the
// store contract tests test our adapter and not the emulator's bugs:
//
// 1. A point read of a missing document must answer 404 NotFound. Upstream
//    1.0.1 dereferences the missing document while checking partition keys
//    and answers 500, which a correct client must treat as "unavailable".
// 2. Operations inside a transactional batch carry no partition key of their
//    own: the service takes it from the batch's x-ms-documentdb-partitionkey
//    header. Upstream parses the (absent) per-operation key and answers 500
//    for every replace, upsert and delete in a batch.
//
// Both fixes wrap the upstream handlers before its route table is built; the
// emulator is otherwise unchanged. Usage: node cosmosdb-server.js -p PORT [--host H]

"use strict";

const readDocument = require("@vercel/cosmosdb-server/lib/handler/read-document");
const batchDocuments = require("@vercel/cosmosdb-server/lib/handler/batch-documents");

const upstreamRead = readDocument.default;
readDocument.default = (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  const header = req.headers["x-ms-documentdb-partitionkey"];
  if (collection.read() && header !== undefined) {
    let key;
    try {
      const parsed = JSON.parse(Array.isArray(header) ? header[0] : header);
      key = Array.isArray(parsed) ? parsed[0] : parsed;
    } catch (err) {
      key = undefined;
    }
    if (key !== undefined && !collection.document(params.docId, key).read()) {
      res.statusCode = 404;
      return { code: "NotFound", message: "Entity with the specified id does not exist in the system." };
    }
  }
  return upstreamRead(account, req, res, params);
};

const upstreamBatch = batchDocuments.default;
batchDocuments.default = async (account, req, res, params) => {
  const header = req.headers["x-ms-documentdb-partitionkey"];
  // The handler reads the body from the request stream; hand it a stream-like
  // request whose operations carry the batch's partition key.
  const json = require("@vercel/cosmosdb-server/lib/json").default;
  const body = await json(req);
  if (Array.isArray(body) && header !== undefined) {
    for (const op of body) {
      if (op && op.partitionKey === undefined) op.partitionKey = Array.isArray(header) ? header[0] : header;
    }
  }
  const { Readable } = require("stream");
  const replay = Readable.from([Buffer.from(JSON.stringify(body))]);
  replay.headers = req.headers;
  replay.method = req.method;
  replay.url = req.url;
  return upstreamBatch(account, replay, res, params);
};

require("@vercel/cosmosdb-server/lib/cli");
