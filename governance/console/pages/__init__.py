"""The console's pages, one module per noun; they share the blueprint of `console.blueprint`."""
