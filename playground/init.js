// Mounts GraphiQL on #graphiql. Kept in its own same-origin file (not inline in the page)
// so the page's Content-Security-Policy can forbid inline scripts altogether.
(function () {
  'use strict';

  const root = document.getElementById('graphiql');
  if (!root) {
    return;
  }
  if (!window.GraphiQL || !window.React || !window.ReactDOM) {
    // Otherwise the page would sit on "Loading…" forever with no hint why.
    root.textContent = 'The GraphQL playground scripts failed to load.';
    return;
  }

  // The server writes the endpoint into the markup; resolving it against the page keeps
  // a relative endpoint such as "/graphql" on this origin.
  const url = new URL(root.getAttribute('data-endpoint') || '/graphql', window.location.href).href;

  // Drop the "Loading…" placeholder before React takes the node over.
  root.textContent = '';

  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: GraphiQL.createFetcher({ url }),
      defaultEditorToolsVisibility: true,
    }),
  );
})();
