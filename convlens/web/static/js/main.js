// Boot the page: the explainer on the document (explainer.js), then the article.
import { mount } from './explainer.js';
import { showError } from './state.js';

async function loadArticle() {
  const container = document.getElementById('article-container');
  const response = await fetch('article.html');
  if (response.ok) container.innerHTML = await response.text();
}

async function boot() {
  await Promise.all([mount(document), loadArticle()]);
  document.body.dataset.ready = 'true'; // tests wait for this
}

boot().catch((error) => showError(`the page could not start: ${error.message}`));
