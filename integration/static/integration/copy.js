// Copy buttons: a button.copy-button copies the value of the .copy-source input next to it.
document.querySelectorAll(".copy-button").forEach(function (button) {
  button.addEventListener("click", function () {
    var input = button.parentElement.querySelector(".copy-source");
    input.focus();
    input.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value);
    } else {
      document.execCommand("copy");
    }
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  });
});
