import { defineConfig } from 'vite'

// Served by the server under /studio (server/studio.py): hashed files in assets/ are cached for
// good, index.html never. `npm run dev` proxies the API and the rooms to a local server.
export default defineConfig({
  base: '/studio/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000
  },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8000',
      '/collab': { target: 'ws://127.0.0.1:8000', ws: true }
    }
  }
})
