// drizzle-kit's configuration of the Node.js client test
// (drizzle_kit.test.js).  `schema` lists the app's tables only; the
// extension's schema, enum and view (deploy_progress.js) are imported by
// them and so never get DDL of their own.  DRIZZLE_OUT is the test's
// temporary migrations folder; the connection comes from the PG*
// variables test/clients/run.sh sets.
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './kit_schema.js',
  out: process.env.DRIZZLE_OUT ?? './drizzle',
  dbCredentials: {
    host: process.env.PGHOST,
    port: Number(process.env.PGPORT ?? 5432),
    user: process.env.PGUSER,
    database: process.env.PGDATABASE,
    ssl: false,
  },
});
