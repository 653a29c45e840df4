// Renders each alert's Teams card preview with the Adaptive Cards renderer. The card JSON is
// in <script type="application/json" class="card-data" data-target="ID"> blocks written by the
// server (HTML-safe JSON); nothing here builds HTML from alert data.
"use strict";
(function () {
  var blocks = document.querySelectorAll("script.card-data");
  if (typeof AdaptiveCards === "undefined") {
    blocks.forEach(function (el) {
      document.getElementById(el.dataset.target).textContent =
        "the Adaptive Cards renderer did not load";
    });
    return;
  }
  blocks.forEach(function (el) {
    var target = document.getElementById(el.dataset.target);
    try {
      var card = new AdaptiveCards.AdaptiveCard();
      card.onExecuteAction = function () {};  // a preview: its buttons do nothing
      card.parse(JSON.parse(el.textContent));
      var rendered = card.render();
      if (!rendered) {
        throw new Error("the renderer returned nothing");
      }
      target.replaceChildren(rendered);
      target.classList.add("rendered");
    } catch (e) {
      target.textContent = "card preview failed: " + e.message;
    }
  });
})();
