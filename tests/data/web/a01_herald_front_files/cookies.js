document.querySelector(".cookie-banner button").onclick=function(){};
